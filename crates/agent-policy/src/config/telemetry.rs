//! The OpenTelemetry trace settings (`docs/observability.md#traces`): the standard `OTEL_*`
//! variables the server reads itself, so that an env file named with `--env-file` sets them as
//! it sets every other operator variable, and the opt-in for recording prompt and output text.
//!
//! Tracing is off unless an endpoint is set ([`Telemetry::traces_endpoint`]). The other
//! standard variables the OpenTelemetry SDK knows (`OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_EXPORTER_OTLP_COMPRESSION`, …) are read by the SDK itself, from the process
//! environment only.

use serde::Serialize;

use super::{Reader, Secret, SecretUrl, vars};
use agent_core::pyfmt;

/// The longest endpoint URL accepted.
pub const MAX_ENDPOINT_BYTES: usize = 2048;

/// The longest `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_RESOURCE_ATTRIBUTES` /
/// `OTEL_SERVICE_NAME` value accepted.
pub const MAX_LIST_BYTES: usize = 8192;

/// The path the OTLP/HTTP exporter appends to `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL).
pub const TRACES_PATH: &str = "/v1/traces";

/// A sampling ratio in `[0, 1]` (`OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratio(f64);

impl Ratio {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Ratio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Ratio {}

/// `OTEL_TRACES_SAMPLER` (with `OTEL_TRACES_SAMPLER_ARG` for the ratio samplers, default 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "sampler", content = "ratio", rename_all = "snake_case")]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(Ratio),
    /// The SDK's default: a caller's sampled `traceparent` is followed, a root is sampled.
    #[default]
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(Ratio),
}

/// The trace settings of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Telemetry {
    /// Where spans are sent (OTLP over HTTP, protobuf): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// as given, else `OTEL_EXPORTER_OTLP_ENDPOINT` followed by `/v1/traces`. `None`: tracing
    /// is off, no exporter is built.
    pub traces_endpoint: Option<SecretUrl>,
    /// `OTEL_EXPORTER_OTLP_HEADERS` then `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (which wins for a
    /// name both set), percent-decoded; their values are secrets (an API key of a vendor).
    #[serde(skip)]
    pub headers: Vec<(String, Secret)>,
    /// `OTEL_SERVICE_NAME`; the default is `claude-agent-mcp`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`, percent-decoded).
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: TraceSampler,
    /// `CLAUDE_AGENT_MCP_OTEL_RECORD_CONTENT`, default false: prompt and output text are
    /// recorded on spans only when true.
    pub record_content: bool,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn enabled(&self) -> bool {
        self.traces_endpoint.is_some()
    }
}

/// Reads the trace settings; problems go to `problems`.
pub(super) fn read(r: &Reader<'_>, problems: &mut Vec<String>) -> Telemetry {
    let set = |name: &'static str| {
        r.raw(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| (name, v))
    };
    let traces_endpoint = match set(vars::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
        Some((name, url)) => endpoint(name, url, problems).map(SecretUrl::new),
        None => set(vars::OTEL_EXPORTER_OTLP_ENDPOINT).and_then(|(name, url)| {
            endpoint(name, url, problems)
                .map(|base| SecretUrl::new(format!("{}{TRACES_PATH}", base.trim_end_matches('/'))))
        }),
    };
    let mut headers: Vec<(String, Secret)> = Vec::new();
    for name in [
        vars::OTEL_EXPORTER_OTLP_HEADERS,
        vars::OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    ] {
        if let Some((name, raw)) = set(name) {
            for (key, value) in pairs(name, raw, problems, true) {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                headers.push((key, Secret::new(value)));
            }
        }
    }
    let service_name = set(vars::OTEL_SERVICE_NAME).and_then(|(name, value)| {
        if value.len() > MAX_LIST_BYTES || value.chars().any(char::is_control) {
            problems.push(format!(
                "{name} is not a valid service name (at most {MAX_LIST_BYTES} bytes, no control characters)"
            ));
            return None;
        }
        Some(value.to_owned())
    });
    let resource_attributes = set(vars::OTEL_RESOURCE_ATTRIBUTES)
        .map(|(name, raw)| pairs(name, raw, problems, false))
        .unwrap_or_default();
    let sampler = sampler(
        set(vars::OTEL_TRACES_SAMPLER),
        set(vars::OTEL_TRACES_SAMPLER_ARG),
        problems,
    );
    Telemetry {
        traces_endpoint,
        headers,
        service_name,
        resource_attributes,
        sampler,
        record_content: r.bool(vars::OTEL_RECORD_CONTENT, false),
    }
}

/// An `http://` or `https://` URL with a host, bounded, without spaces or control characters.
fn endpoint<'v>(name: &str, url: &'v str, problems: &mut Vec<String>) -> Option<&'v str> {
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    let valid = url.len() <= MAX_ENDPOINT_BYTES
        && host.is_some_and(|h| !h.is_empty())
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Some(url)
    } else {
        let shown: String = agent_core::text::redact_url(url)
            .chars()
            .take(100)
            .collect();
        problems.push(format!(
            "{name}={} is not a valid endpoint: give an http:// or https:// URL (at most {MAX_ENDPOINT_BYTES} bytes)",
            pyfmt::repr_str(&shown)
        ));
        None
    }
}

/// `key=value,key=value` (the W3C baggage form the OpenTelemetry specification uses), keys and
/// values trimmed and percent-decoded. The values of `secret` lists are never shown.
fn pairs(name: &str, raw: &str, problems: &mut Vec<String>, secret: bool) -> Vec<(String, String)> {
    if raw.len() > MAX_LIST_BYTES {
        problems.push(format!("{name} is longer than {MAX_LIST_BYTES} bytes"));
        return Vec::new();
    }
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let parsed = item.split_once('=').and_then(|(k, v)| {
            let key = percent_decode(k.trim())?;
            let value = percent_decode(v.trim())?;
            let key_ok = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(&b));
            // A header's value must be sendable as one (visible ASCII, space, tab): the
            // exporter would otherwise leave the header out without a word.
            let value_ok = if secret {
                value
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            } else {
                !value.chars().any(char::is_control)
            };
            (key_ok && value_ok).then_some((key, value))
        });
        match parsed {
            Some(pair) => out.push(pair),
            None => {
                let shown: String = if secret {
                    // The key only: an item without `=` may be a value written alone.
                    item.split_once('=')
                        .map_or("(an item without =)", |(key, _)| key.trim())
                        .chars()
                        .take(100)
                        .collect()
                } else {
                    item.chars().take(100).collect()
                };
                let value_rule = if secret {
                    "printable ASCII"
                } else {
                    "without control characters"
                };
                problems.push(format!(
                    "{name}: {} is not a key=value pair (a token key, a value {value_rule})",
                    pyfmt::repr_str(&shown)
                ));
            }
        }
    }
    out
}

/// `%XX` decoding; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn sampler(
    kind: Option<(&'static str, &str)>,
    arg: Option<(&'static str, &str)>,
    problems: &mut Vec<String>,
) -> TraceSampler {
    fn ratio(arg: Option<(&'static str, &str)>, problems: &mut Vec<String>) -> Option<Ratio> {
        let Some((name, raw)) = arg else {
            return Some(Ratio(1.0));
        };
        match raw.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Some(Ratio(r)),
            _ => {
                problems.push(format!(
                    "{name}={} is not a ratio between 0 and 1",
                    pyfmt::repr_str(&raw.chars().take(100).collect::<String>())
                ));
                None
            }
        }
    }
    // Checked whenever set (an invalid ratio is a mistake even where it is not used), used by
    // the ratio samplers only.
    let ratio = ratio(arg, problems);
    let Some((name, raw)) = kind else {
        return TraceSampler::default();
    };
    let chosen = match raw.to_ascii_lowercase().as_str() {
        "always_on" => Some(TraceSampler::AlwaysOn),
        "always_off" => Some(TraceSampler::AlwaysOff),
        "traceidratio" => ratio.map(TraceSampler::TraceIdRatio),
        "parentbased_always_on" => Some(TraceSampler::ParentBasedAlwaysOn),
        "parentbased_always_off" => Some(TraceSampler::ParentBasedAlwaysOff),
        "parentbased_traceidratio" => ratio.map(TraceSampler::ParentBasedTraceIdRatio),
        _ => {
            problems.push(format!(
                "{name}={} is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
                pyfmt::repr_str(&raw.chars().take(100).collect::<String>())
            ));
            None
        }
    };
    chosen.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn telemetry(vars: &[(&str, &str)]) -> Result<Telemetry, Vec<String>> {
        let map = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let r = Reader {
            vars: &map,
            problems: Vec::new(),
        };
        let mut problems = Vec::new();
        let t = read(&r, &mut problems);
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn off_without_an_endpoint() {
        let t = telemetry(&[(vars::OTEL_SERVICE_NAME, "svc")]).unwrap();
        assert!(!t.enabled());
        assert_eq!(t.service_name.as_deref(), Some("svc"));
        assert!(!t.record_content);
        assert!(
            !telemetry(&[(vars::OTEL_EXPORTER_OTLP_ENDPOINT, "  ")])
                .unwrap()
                .enabled()
        );
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_traces_endpoint_is_taken_as_given() {
        let t =
            telemetry(&[(vars::OTEL_EXPORTER_OTLP_ENDPOINT, "http://127.0.0.1:4318/")]).unwrap();
        assert_eq!(
            t.traces_endpoint.as_ref().map(SecretUrl::expose),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        let t = telemetry(&[
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "http://a:4318"),
            (vars::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "https://b/custom"),
        ])
        .unwrap();
        assert_eq!(
            t.traces_endpoint.as_ref().map(SecretUrl::expose),
            Some("https://b/custom")
        );
    }

    #[test]
    fn bad_values_are_problems_that_do_not_show_header_values() {
        let problems = telemetry(&[
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "localhost:4318"),
            (
                vars::OTEL_EXPORTER_OTLP_HEADERS,
                "api-key=s3cr3t,Bearer s3cr3t,x=a%zzs3cr3t",
            ),
            (vars::OTEL_TRACES_SAMPLER, "sometimes"),
            (vars::OTEL_RESOURCE_ATTRIBUTES, "a=%zz"),
        ])
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(
            problems.contains(&"OTEL_EXPORTER_OTLP_HEADERS: '(an item without =)' is not a key=value pair (a token key, a value printable ASCII)".to_owned()),
            "{problems:?}"
        );
        assert!(problems[0].contains("is not a valid endpoint"));
        assert!(problems.iter().all(|p| !p.contains("s3cr3t")));
        let problems = telemetry(&[
            (vars::OTEL_TRACES_SAMPLER, "traceidratio"),
            (vars::OTEL_TRACES_SAMPLER_ARG, "1.5"),
        ])
        .unwrap_err();
        assert_eq!(
            problems,
            ["OTEL_TRACES_SAMPLER_ARG='1.5' is not a ratio between 0 and 1"]
        );
        let problems = telemetry(&[(vars::OTEL_TRACES_SAMPLER_ARG, "NaN")]).unwrap_err();
        assert_eq!(
            problems,
            ["OTEL_TRACES_SAMPLER_ARG='NaN' is not a ratio between 0 and 1"]
        );
        let problems =
            telemetry(&[(vars::OTEL_EXPORTER_OTLP_ENDPOINT, "ftp://u:hunter2@h")]).unwrap_err();
        assert_eq!(
            problems,
            [
                "OTEL_EXPORTER_OTLP_ENDPOINT='ftp://u:***@h' is not a valid endpoint: give an http:// or https:// URL (at most 2048 bytes)"
            ]
        );
        let long = format!("http://h/{}", "a".repeat(MAX_ENDPOINT_BYTES));
        assert!(telemetry(&[(vars::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, &long)]).is_err());
    }

    /// The collector's URL may carry a password: the settings' `Debug` and `Serialize` show it
    /// redacted; the exporter reads it with `expose`.
    #[test]
    fn the_endpoint_password_is_never_shown() {
        let t = telemetry(&[(
            vars::OTEL_EXPORTER_OTLP_ENDPOINT,
            "https://app:hunter2@collector:4318",
        )])
        .unwrap();
        let endpoint = t.traces_endpoint.as_ref().unwrap();
        assert_eq!(
            endpoint.expose(),
            "https://app:hunter2@collector:4318/v1/traces"
        );
        let shown = [format!("{t:?}"), serde_json::to_string(&t).unwrap()];
        for text in shown {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(
                text.contains("https://app:***@collector:4318/v1/traces"),
                "{text}"
            );
        }
    }

    /// A header value the exporter could not send (not printable ASCII once decoded) is
    /// refused at startup, without showing it; a resource attribute may hold any text.
    #[test]
    fn a_header_value_that_is_not_printable_ascii_is_refused() {
        for value in ["t%C3%B6ken", "a%7Fb", "caf\u{e9}"] {
            let problems = telemetry(&[(
                vars::OTEL_EXPORTER_OTLP_HEADERS,
                &format!("api-key={value}"),
            )])
            .unwrap_err();
            assert_eq!(
                problems,
                [
                    "OTEL_EXPORTER_OTLP_HEADERS: 'api-key' is not a key=value pair (a token key, a value printable ASCII)"
                ],
                "{value}"
            );
        }
        let t = telemetry(&[
            (vars::OTEL_EXPORTER_OTLP_HEADERS, "api-key=a b\tc~"),
            (vars::OTEL_RESOURCE_ATTRIBUTES, "team=caf%C3%A9"),
        ])
        .unwrap();
        assert_eq!(t.headers[0].1.expose(), "a b\tc~");
        assert_eq!(t.resource_attributes[0].1, "caf\u{e9}");
    }

    #[test]
    fn headers_attributes_and_sampler_parse() {
        let t = telemetry(&[
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318"),
            (
                vars::OTEL_EXPORTER_OTLP_HEADERS,
                "api-key=a%20b, x-tenant=1",
            ),
            (vars::OTEL_EXPORTER_OTLP_TRACES_HEADERS, "API-KEY=c"),
            (
                vars::OTEL_RESOURCE_ATTRIBUTES,
                "deployment.environment=prod,team=x%2Cy",
            ),
            (vars::OTEL_TRACES_SAMPLER, "ParentBased_TraceIdRatio"),
            (vars::OTEL_TRACES_SAMPLER_ARG, "0.25"),
            (vars::OTEL_RECORD_CONTENT, "true"),
        ])
        .unwrap();
        let headers: Vec<(&str, &str)> = t
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(headers, [("x-tenant", "1"), ("API-KEY", "c")]);
        assert_eq!(
            t.resource_attributes,
            [
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "x,y".to_owned())
            ]
        );
        assert_eq!(
            t.sampler,
            TraceSampler::ParentBasedTraceIdRatio(Ratio(0.25))
        );
        assert!(t.record_content);
    }
}
