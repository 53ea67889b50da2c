//! The simulator binary (built by a later issue).
fn main() {
    eprintln!("loadtest: not built yet");
    std::process::exit(1);
}
