// `sqlx::migrate!` embeds the migrations; a new or changed one rebuilds the
// crate, where otherwise only a change of its Rust sources would.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
