//! The engine binary (built by a later issue).
fn main() {
    eprintln!("engine: not built yet");
    std::process::exit(1);
}
