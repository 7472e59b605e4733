//! Link options for the certgate binary.

fn main() {
    // Relative relocations packed as DT_RELR (glibc 2.36+; GNU ld 2.38+ or lld): the 650 KB
    // `.rela.dyn` table that the loader reads, and keeps resident, at every start becomes
    // a few KB.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=build.rs");
}
