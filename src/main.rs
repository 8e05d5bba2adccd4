//! The `tenure` binary: parse the command line, set up logging, call the
//! library, print the error chain, and turn the result into an exit code.

use clap::Parser;
use std::process::ExitCode;
use tenure::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: decoding and the SQL models allocate many
/// small buffers from several threads, which glibc's allocator serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` and `arena_purge_mult` (the order of `mi_option_e`
/// in mimalloc 3's `mimalloc.h`, as libmimalloc-sys 0.1.49 builds it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ARENA_PURGE_MULT: libmimalloc_sys::mi_option_t = 24;

/// Give memory that was freed back to the OS after 10 ms, not mimalloc 3's
/// default of one second (ten for whole arenas): a run frees large buffers
/// from phase to phase (the key index after ingest, each model's operators),
/// and held freed memory added about 300 MiB to the peak RSS of a 10 M
/// event run. `MIMALLOC_PURGE_DELAY` still overrides it.
fn return_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set stores an option value, which mimalloc reads at
    // each purge; it is not thread safe, and this runs first in `main`,
    // before any other thread of the process exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_PURGE_MULT, 1);
    }
}

fn main() -> ExitCode {
    // No transparent huge pages for this process, also where the system
    // enables them for every mapping: ingest allocates and frees large
    // buffers, and the kernel would zero a whole 2 MiB page at each first
    // touch. Failure only means the system default.
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes no pointers; it sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    return_freed_memory_soon();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("TENURE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,deltalake_core=off,delta_kernel=off,buoyant_kernel=off,tenure={level}")));
    // Colour codes only for a person at a terminal: piped logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(tenure::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut lines = vec![e.to_string()];
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !lines.iter().any(|l| l.contains(&text)) {
                    lines.push(text);
                }
            }
            eprintln!("error: {}", lines.join("\n  caused by: "));
            ExitCode::FAILURE
        }
    }
}
