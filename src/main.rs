//! The `lookalike` command-line tool.

fn main() {
    use clap::Parser;
    let cli = lookalike::cli::Cli::parse();
    if let Err(error) = lookalike::cli::run(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
