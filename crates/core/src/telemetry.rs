//! The seam between the service's crates and OpenTelemetry, which only the binary links: the
//! binary installs a [`TraceBridge`] when trace export is configured; without one every call
//! here is a no-op and no trace context is carried.

use std::sync::OnceLock;

/// What the binary's OpenTelemetry setup provides.
pub trait TraceBridge: Send + Sync + 'static {
    /// The W3C `traceparent` of `span`, if it belongs to a sampled trace.
    fn traceparent(&self, span: &tracing::Span) -> Option<String>;
    /// Makes `span` a child of the remote span a `traceparent` value names (ignored if it does
    /// not parse).
    fn set_parent(&self, span: &tracing::Span, traceparent: &str);
}

static BRIDGE: OnceLock<Box<dyn TraceBridge>> = OnceLock::new();

/// Installs the bridge (once; later calls are ignored).
pub fn install(bridge: Box<dyn TraceBridge>) {
    let _ = BRIDGE.set(bridge);
}

/// The `traceparent` of `span` (see [`TraceBridge::traceparent`]).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    BRIDGE.get().and_then(|b| b.traceparent(span))
}

/// Parents `span` on a remote span (see [`TraceBridge::set_parent`]).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(b) = BRIDGE.get() {
        b.set_parent(span, traceparent);
    }
}

/// The trace id (32 hex digits) of a well-formed `traceparent` value
/// (`00-<trace id>-<span id>-<flags>`), if it is one.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    (parts.next().is_none()
        && hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(span, 16)
        && span.bytes().any(|b| b != b'0')
        && hex(flags, 2))
    .then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_of_valid_traceparents_only() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
