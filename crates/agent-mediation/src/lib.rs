//! # agent-mediation
//!
//! Runtime-mediated execution for the `claude_code` backend (`docs/reference/mediation.md#1-scope`;
//! operator guide in `docs/mediation.md`). The Claude Code CLI has no tool protocol the server can
//! drive, so the model may write request blocks in its text output:
//!
//! ```text
//! <mediated_action_request>
//! {"mediation_version":"v0.8.0","request_id":"req_001","action_type":"read",
//!  "target_tool":"server__tool","arguments":{"path":"/x"},"justification":"why"}
//! </mediated_action_request>
//! ```
//!
//! After the backend returns, the runtime parses them ([`block`]), validates each against the
//! operator's settings in a fixed gate order ([`policy`]), runs approved ones through the
//! downstream federation ([`Mediator`], [`MediationInvoker`]), records `mediated_*` events
//! ([`event`]) and adds one envelope warning per rejection. This is not tool calling: the
//! model never sees a result within the same turn; continuations may summarise them.
//!
//! * [`parse_blocks`]: the pure, total block parser.
//! * [`MediationSettings`], [`validate_action`], [`validate_workflow`], [`Rejection`]: the
//!   gates and every `rejected:*` code with its exact reason.
//! * [`Mediator::process`]: one execution's pass
//!   (`docs/reference/mediation.md#3-processing-order`).
//! * [`teaching_prompt`]: an addition — the prompt section that tells the model the protocol
//!   and the tools it may request.
//!
//! ```no_run
//! # async fn demo(
//! #     federation: std::sync::Arc<agent_federation::Federation>,
//! #     store: std::sync::Arc<dyn agent_core::EventLog>,
//! #     output_text: &str,
//! #     config: &agent_policy::config::Config,
//! # ) -> Result<(), agent_core::StoreError> {
//! use std::sync::Arc;
//! use agent_core::Profile;
//! use agent_mediation::{MediationInput, Mediator, StoreEventSink};
//!
//! let mediator = Mediator::new(
//!     config.mediation.clone(),
//!     federation.clone(),
//!     Arc::new(StoreEventSink::new(store)),
//! );
//! let visible = federation.visible_tool_names(Profile::General);
//! let outcome = mediator
//!     .process(&MediationInput {
//!         output_text,
//!         session_id: "sess_1",
//!         turn_index: 1,
//!         profile: Profile::General,
//!         working_directory: None,
//!         federation_active: federation.is_active(),
//!         visible_tools: &visible,
//!         workflows_supported: true,
//!         progress: None,
//!     })
//!     .await?;
//! // Append after the backend's own warnings.
//! let _warnings: Vec<String> = outcome.warnings;
//! # Ok(())
//! # }
//! ```

pub mod block;
pub mod event;
mod federation;
pub mod mediator;
pub mod policy;
pub mod runtime;
pub mod teach;

pub use block::{
    ActionRequest, ActionType, BlockKind, Blocks, SkippedBlock, StepIndex, WorkflowRequest,
    WorkflowStep, parse_blocks,
};
pub use event::{ALL_EVENT_TYPES, APPROVAL_EVENT_TYPES, MediationEvent, ResultStatus};
pub use mediator::{
    ActionResult, InvokeOutcome, MediationEventSink, MediationInput, MediationInvoker,
    MediationOutcome, Mediator, StepRef, StoreEventSink, WorkflowResult, arguments_summary,
    result_summary,
};
pub use policy::{
    GateContext, GateRequest, MediationSettings, PolicyProfile, Rejection, RejectionReason,
    failure_reason_for_code, validate_action, validate_workflow,
};
pub use runtime::FederatedMediator;
pub use teach::teaching_prompt;
