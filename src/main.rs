//! The `ferry` binary: parses the command line and hands over to the library.

use clap::Parser;

/// Threads for blocking file-system work (the embedded store, the CLI's reads). Tokio's default
/// (512) let a burst of small PUTs grow the pool to hundreds of threads, each with its own stack
/// and allocator state, without making the disk any faster. 32 (was 64) holds peak memory under
/// the benchmark's 64 concurrent small PUTs ~1 MiB lower, with room left for slow fsyncs not to
/// hold up the store's other file work.
const BLOCKING_THREADS: usize = 32;

fn main() -> std::process::ExitCode {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(BLOCKING_THREADS).build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    ferry::cli::init_tracing();
    let cli = ferry::cli::Cli::parse();
    match ferry::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
