/*
 * Reference for certgate-pki's verifier: verifies a client chain exactly as nginx 1.22
 * does with OpenSSL 3 (see ngx_ssl_client_certificate / ngx_ssl_crl / ngx_ssl_verify_callback):
 * the store holds ssl_client_certificate + ssl_trusted_certificate, ssl_crl sets
 * X509_V_FLAG_CRL_CHECK|X509_V_FLAG_CRL_CHECK_ALL, the verify depth comes from
 * ssl_verify_depth, libssl sets purpose "ssl_client" and the security level, and nginx's
 * callback accepts every error, so verification runs to the end.
 *
 * Used by the ignored `parity_tests` in src/parity_tests.rs:
 *   cc -o nginx_verify nginx_verify.c -lssl -lcrypto
 *   nginx_verify CA|- TRUSTED|- CRLS|- DEPTH CHAIN.pem UNIX_TIME
 * Prints "E <code> <depth>" for every error the callback sees, then "R <code>".
 */
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int callback(int ok, X509_STORE_CTX *ctx)
{
    if (!ok)
        printf("E %d %d\n", X509_STORE_CTX_get_error(ctx), X509_STORE_CTX_get_error_depth(ctx));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s CA TRUSTED CRLS DEPTH CHAIN TIME\n", argv[0]);
        return 2;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (strcmp(argv[1], "-") != 0 && !SSL_CTX_load_verify_locations(ctx, argv[1], NULL))
        return 3;
    if (strcmp(argv[2], "-") != 0 && !SSL_CTX_load_verify_locations(ctx, argv[2], NULL))
        return 3;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    if (strcmp(argv[3], "-") != 0) {
        X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (!X509_LOOKUP_load_file(lookup, argv[3], X509_FILETYPE_PEM))
            return 3;
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, callback);
    SSL_CTX_set_verify_depth(ctx, atoi(argv[4]));
    SSL *ssl = SSL_new(ctx);

    FILE *f = fopen(argv[5], "r");
    if (f == NULL)
        return 3;
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
        sk_X509_push(chain, x);
    fclose(f);

    /* What libssl's ssl_verify_cert_chain does for a server verifying a client. */
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(vctx, store, sk_X509_value(chain, 0), chain);
    X509_STORE_CTX_set_default(vctx, "ssl_client");
    X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(vctx), SSL_get0_param(ssl));
    X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(vctx), SSL_get_security_level(ssl));
    X509_STORE_CTX_set_verify_cb(vctx, callback);
    X509_STORE_CTX_set_time(vctx, 0, (time_t)atoll(argv[6]));
    X509_verify_cert(vctx);
    printf("R %d\n", X509_STORE_CTX_get_error(vctx));
    return 0;
}
