//! The engine's mediation port implemented over federation: what the binary attaches to the
//! engine (`agent_core::OutputMediator`).

use std::sync::Arc;

use agent_core::{
    EventLog, ExecContext, MediationRequest, Observer, OutputMediator, Profile, StoreError,
    ToolCallContext, ToolKind, ToolProvider,
};
use agent_federation::Federation;
use async_trait::async_trait;
use tracing::Instrument;

use crate::mediator::{InvokeOutcome, MediationInput, MediationInvoker, Mediator, StoreEventSink};
use crate::policy::MediationSettings;
use crate::teach::teaching_prompt;

/// Mediation of the Claude Code backend's output through the federation layer.
pub struct FederatedMediator {
    mediator: Mediator,
    settings: MediationSettings,
    federation: Federation,
    store: Arc<dyn EventLog>,
}

impl FederatedMediator {
    pub fn new(
        settings: MediationSettings,
        federation: Federation,
        store: Arc<dyn EventLog>,
    ) -> Self {
        let mediator = Mediator::new(
            settings.clone(),
            Arc::new(federation.clone()),
            Arc::new(StoreEventSink::new(Arc::clone(&store))),
        );
        Self {
            mediator,
            settings,
            federation,
            store,
        }
    }

    /// Reports every mediated tool call that reached the federation layer to `observer`
    /// ([`ToolKind::Mediated`]; `docs/observability.md`).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.mediator = Mediator::new(
            self.settings.clone(),
            Arc::new(ObservedInvoker {
                federation: self.federation.clone(),
                observer,
            }),
            Arc::new(StoreEventSink::new(Arc::clone(&self.store))),
        );
        self
    }
}

/// Federation's invoker, reporting each call's outcome: a call refused before any contact
/// (`Err`) and one that failed downstream both count as not ok.
struct ObservedInvoker {
    federation: Federation,
    observer: Arc<dyn Observer>,
}

#[async_trait]
impl MediationInvoker for ObservedInvoker {
    async fn invoke(
        &self,
        ctx: &ToolCallContext,
        tool: &str,
        arguments: serde_json::Value,
    ) -> Result<InvokeOutcome, String> {
        let span = tracing::info_span!(
            target: agent_core::observe::trace::SPAN_TARGET,
            "execute_tool",
            otel.name = tracing::field::Empty,
            "gen_ai.operation.name" = "execute_tool",
            "gen_ai.tool.name" = tracing::field::Empty,
            "gen_ai.tool.type" = "function",
            "claude_agent_mcp.tool.kind" = ToolKind::Mediated.as_str(),
            "error.type" = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if !span.is_disabled() {
            // The model's output names the tool: bounded before it goes on the span.
            match agent_core::observe::trace::bounded(tool) {
                Some(tool) => {
                    span.record("gen_ai.tool.name", tool);
                    span.record("otel.name", format!("execute_tool {tool}").as_str());
                }
                None => {
                    span.record("otel.name", "execute_tool");
                }
            }
        }
        let outcome = MediationInvoker::invoke(&self.federation, ctx, tool, arguments)
            .instrument(span.clone())
            .await;
        if !outcome.as_ref().is_ok_and(|o| o.success) {
            agent_core::observe::trace::record_error(&span, "tool_error");
        }
        self.observer.tool_call(
            ToolKind::Mediated,
            outcome.as_ref().is_ok_and(|o| o.success),
        );
        outcome
    }
}

#[async_trait]
impl OutputMediator for FederatedMediator {
    async fn mediate(
        &self,
        request: MediationRequest<'_>,
        ctx: &ExecContext,
    ) -> Result<Vec<String>, StoreError> {
        let federation_active = request.tools_allowed && self.federation.is_active();
        let visible = if federation_active {
            self.federation.visible_tool_names(request.profile)
        } else {
            Vec::new()
        };
        let input = MediationInput {
            output_text: request.output_text,
            session_id: request.session_id,
            turn_index: request.turn_index,
            profile: request.profile,
            working_directory: request.working_directory,
            federation_active,
            visible_tools: &visible,
            workflows_supported: request.workflows_supported,
            progress: Some(&*ctx.progress),
        };
        self.mediator
            .process(&input)
            .await
            .map(|outcome| outcome.warnings)
    }

    fn prompt_section(&self, profile: Profile) -> Option<String> {
        if !self.federation.is_active() {
            return None;
        }
        teaching_prompt(
            &self.settings,
            &ToolProvider::visible_tools(&self.federation, profile),
        )
    }
}
