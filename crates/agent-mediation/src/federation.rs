//! [`MediationInvoker`] for the downstream federation (`docs/reference/mediation.md#5-execution`,
//! `docs/reference/federation.md#6-invocation`).

use agent_core::ToolCallContext;
use agent_federation::Federation;
use async_trait::async_trait;
use serde_json::Value;

use crate::mediator::{InvokeOutcome, MediationInvoker};

/// `Federation::invoke`: a refusal before contact (not visible, schema, no server config) is
/// `Err(message)`; an attempted call is `Ok`, its text being the content or `Error: <message>`.
/// The federation writes `downstream_tool_invocation` / `downstream_tool_result` itself.
#[async_trait]
impl MediationInvoker for Federation {
    async fn invoke(
        &self,
        ctx: &ToolCallContext,
        tool: &str,
        arguments: Value,
    ) -> Result<InvokeOutcome, String> {
        match Federation::invoke(self, ctx, tool, arguments).await {
            Ok(result) => Ok(InvokeOutcome {
                success: result.success,
                text: result.as_text(),
            }),
            Err(refused) => Err(refused.message),
        }
    }
}
