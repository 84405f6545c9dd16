//! Links the shim `-z nodelete`: it puts a pointer to its own memory into
//! the process's environment and registers fork handlers, so a program
//! that `dlopen`s and `dlclose`s it must not unmap it.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
