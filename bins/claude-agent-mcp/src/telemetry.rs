//! Traces (`docs/observability.md#traces`): the OpenTelemetry SDK, built only when an OTLP
//! endpoint is configured (`agent_policy::config::telemetry`), exporting the spans of
//! [`SPAN_TARGET`] over OTLP/HTTP (protobuf) from the SDK's batch processor thread.
//!
//! Off (no endpoint): no exporter, no thread, no connection; the spans are disabled at their
//! call sites, as no layer wants them.

use std::collections::HashMap;

use agent_core::observe::trace::SPAN_TARGET;
use agent_policy::config::telemetry::{Telemetry, TraceSampler};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

/// The `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = agent_core::SERVER_NAME;

/// The instrumentation scope of every span.
const SCOPE: &str = agent_core::SERVER_NAME;

/// The trace pipeline of the process, when configured.
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Builds the exporter and the provider when `telemetry` has an endpoint.
    pub fn start(telemetry: &Telemetry) -> Result<Self, String> {
        let Some(endpoint) = &telemetry.traces_endpoint else {
            return Ok(Self { provider: None });
        };
        let headers: HashMap<String, String> = telemetry
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.expose())
            .with_headers(headers)
            .build()
            .map_err(|e| {
                // The exporter's error may quote the endpoint, password and all.
                let shown = e
                    .to_string()
                    .replace(endpoint.expose(), &endpoint.redacted());
                format!("OpenTelemetry: the trace exporter could not be built: {shown}")
            })?;
        let service_name = telemetry
            .service_name
            .clone()
            .or_else(|| {
                telemetry
                    .resource_attributes
                    .iter()
                    .find(|(key, _)| key == "service.name")
                    .map(|(_, value)| value.clone())
            })
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        let resource = Resource::builder()
            .with_attributes(
                telemetry
                    .resource_attributes
                    .iter()
                    .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
            )
            .with_service_name(service_name)
            .with_attribute(KeyValue::new("service.version", agent_core::VERSION))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler(telemetry.sampler))
            .with_resource(resource)
            .build();
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// The layer that exports the spans of [`SPAN_TARGET`] (none when tracing is off). It
    /// sees nothing else: no log event, no other crate's span (the SDK's own, the HTTP
    /// clients').
    pub fn layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let provider = self.provider.as_ref()?;
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(SCOPE))
                // No source location, busy/idle times, thread or target: attributes the
                // conventions do not have, paid on every span.
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_target(false)
                // Nothing in the process reads the OpenTelemetry context of the current span
                // (parents come from `tracing`, the caller's from `_meta`): not attaching it at
                // every poll of an instrumented future saves the work.
                .with_context_activation(false)
                .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::TRACE)),
        )
    }

    /// Sends the spans still queued and stops the exporter (blocking: on a blocking thread).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = flushed {
            tracing::warn!(target: "server", error = %e, "OpenTelemetry: flushing the traces failed");
        }
    }
}

fn sampler(sampler: TraceSampler) -> Sampler {
    match sampler {
        TraceSampler::AlwaysOn => Sampler::AlwaysOn,
        TraceSampler::AlwaysOff => Sampler::AlwaysOff,
        TraceSampler::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r.get()),
        TraceSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TraceSampler::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TraceSampler::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r.get())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_policy::config::SecretUrl;

    /// An endpoint the configuration lets through but the exporter refuses (`|` is not allowed
    /// in a URI's host): the error the operator sees never shows the password.
    #[test]
    fn an_endpoint_the_exporter_refuses_is_reported_without_its_password() {
        let telemetry = Telemetry {
            traces_endpoint: Some(SecretUrl::new(
                "http://app:hunter2@coll|ector:4318/v1/traces",
            )),
            ..Telemetry::default()
        };
        let Err(error) = Traces::start(&telemetry) else {
            panic!("the exporter accepted an endpoint with '|' in its host");
        };
        assert!(
            error.starts_with("OpenTelemetry: the trace exporter could not be built"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }
}
