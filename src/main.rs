//! The `lookalike` command-line tool (native only; the wasm build is a library).

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use clap::Parser;
    let cli = lookalike::native::cli::Cli::parse();
    if let Err(error) = lookalike::native::cli::run(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
