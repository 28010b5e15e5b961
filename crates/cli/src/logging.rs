//! Tracing set-up: human-readable or JSON lines on stderr, filtered by `--log`.

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: invalid --log filter `{filter}` ({e}); using `info`");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        // JSON logs also close every span with its wall time (`time.busy` + `time.idle`),
        // which is how a round's own overhead is read back from the logs.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_events(FmtSpan::CLOSE)
            .init(),
    }
}
