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

/// mimalloc's options that [`return_freed_memory_soon`] sets (their place in
/// `mi_option_e` of mimalloc 3's `mimalloc.h`, as libmimalloc-sys 0.1.49
/// builds it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ARENA_PURGE_MULT: libmimalloc_sys::mi_option_t = 24;
const MI_OPTION_GENERIC_COLLECT: libmimalloc_sys::mi_option_t = 34;
const MI_OPTION_PAGE_FULL_RETAIN: libmimalloc_sys::mi_option_t = 36;
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;

/// Give memory that was freed back to the OS soon: a run frees large
/// buffers from phase to phase (the key index after ingest, each model's
/// operators and tables), and memory mimalloc keeps after a free counts in
/// the peak of the next phase. Measured on a 10 M event run, where nothing
/// is live once the run ends, mimalloc 3's defaults still held 280-330 MiB
/// then, and the models peaked at 950 MiB; with these settings it holds
/// about 30 MiB, and the models peak at about 800 MiB, in the same time:
/// - freed pages go back after 10 ms, not mimalloc 3's one second (ten for
///   whole arenas);
/// - objects over 1 MiB (key tables, hash tables, column buffers) are mapped
///   on their own and unmapped when freed, instead of staying in an arena;
/// - a thread keeps no empty pages for later, and collects its freed pages
///   every 100 allocations of the slow path rather than 10,000.
///
/// A `MIMALLOC_...` variable of the environment overrides its option.
fn return_freed_memory_soon() {
    let options = [
        ("MIMALLOC_PURGE_DELAY", MI_OPTION_PURGE_DELAY, 10),
        ("MIMALLOC_ARENA_PURGE_MULT", MI_OPTION_ARENA_PURGE_MULT, 1),
        ("MIMALLOC_ARENA_MAX_OBJECT_SIZE", MI_OPTION_ARENA_MAX_OBJECT_SIZE, 1024),
        ("MIMALLOC_PAGE_FULL_RETAIN", MI_OPTION_PAGE_FULL_RETAIN, 0),
        ("MIMALLOC_GENERIC_COLLECT", MI_OPTION_GENERIC_COLLECT, 100),
    ];
    for (variable, option, value) in options {
        if std::env::var_os(variable).is_some() {
            continue;
        }
        // SAFETY: mi_option_set stores an option value, which mimalloc reads
        // where it applies it; it is not thread safe, and this runs first in
        // `main`, before any other thread of the process exists.
        unsafe {
            libmimalloc_sys::mi_option_set(option, value);
        }
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
