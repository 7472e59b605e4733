/*
 * Prints every object libcrypto knows that has an OID, one per line:
 * dotted OID, TAB, short name (OBJ_nid2sn), TAB, DER content octets in hex.
 * Used by gen_oid_table.sh to build src/oid_table.rs.
 */
#include <stdio.h>
#include <openssl/objects.h>

int main(void)
{
    for (int nid = 1; nid < 5000; nid++) {
        const ASN1_OBJECT *o = OBJ_nid2obj(nid);
        if (o == NULL)
            continue;
        int len = (int)OBJ_length(o);
        const unsigned char *d = OBJ_get0_data(o);
        const char *sn = OBJ_nid2sn(nid);
        if (len <= 0 || d == NULL || sn == NULL)
            continue;
        char txt[128];
        OBJ_obj2txt(txt, sizeof txt, o, 1);
        printf("%s\t%s\t", txt, sn);
        for (int i = 0; i < len; i++)
            printf("%02x", d[i]);
        printf("\n");
    }
    return 0;
}
