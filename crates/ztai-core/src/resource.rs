//! Actions and the resources they act on.
//!
//! Kept as closed enums so every place that decides or records an action handles every kind; the
//! names match the Cedar schema's entity types and action ids one to one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What the principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Call a model (chat, completion, embedding).
    Invoke,
    /// List a model among the available ones (`GET /v1/models`).
    ListModel,
    CallTool,
    ReadDocument,
    Egress,
    Approve,
    /// Mint a task token for an agent to act for the caller.
    Delegate,
    /// Any control-plane change or read through the admin API.
    Admin,
    /// See back the values behind a redaction session's tokens (`POST /v1/reveal`).
    Reveal,
}

impl Action {
    /// The Cedar action id.
    pub fn cedar_id(self) -> &'static str {
        match self {
            Action::Invoke => "invoke",
            Action::ListModel => "list_model",
            Action::CallTool => "call_tool",
            Action::ReadDocument => "read_document",
            Action::Egress => "egress",
            Action::Approve => "approve",
            Action::Delegate => "delegate",
            Action::Admin => "admin",
            Action::Reveal => "reveal",
        }
    }
}

impl Action {
    /// Every action, in schema order.
    pub const ALL: [Action; 9] = [
        Action::Invoke,
        Action::ListModel,
        Action::CallTool,
        Action::ReadDocument,
        Action::Egress,
        Action::Approve,
        Action::Delegate,
        Action::Admin,
        Action::Reveal,
    ];

    /// The action with this Cedar id.
    pub fn parse(s: &str) -> Option<Self> {
        Action::ALL.into_iter().find(|a| a.cedar_id() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cedar_id())
    }
}

/// What the action is applied to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Resource {
    Model(String),
    Tool(String),
    Document(String),
    Dataset(String),
    Destination(String),
    /// A registered agent (as what a user delegates to).
    Agent(String),
    /// A control-plane area (`keys`, `audit`, `policies`).
    Api(String),
    /// A request held for human approval, by its ticket id (as what an approver decides on).
    Approval(String),
}

impl Resource {
    /// The Cedar entity type name.
    pub fn entity_type(&self) -> &'static str {
        match self {
            Resource::Model(_) => "Model",
            Resource::Tool(_) => "Tool",
            Resource::Document(_) => "Document",
            Resource::Dataset(_) => "Dataset",
            Resource::Destination(_) => "Destination",
            Resource::Agent(_) => "Agent",
            Resource::Api(_) => "Api",
            Resource::Approval(_) => "Approval",
        }
    }

    /// Parses `kind:id` (`model:echo-small`, `tool:orders.lookup`); the kind is the lowercase
    /// entity type.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, id) = s.split_once(':')?;
        let id = id.to_string();
        Some(match kind {
            "model" => Resource::Model(id),
            "tool" => Resource::Tool(id),
            "document" => Resource::Document(id),
            "dataset" => Resource::Dataset(id),
            "destination" => Resource::Destination(id),
            "agent" => Resource::Agent(id),
            "api" => Resource::Api(id),
            "approval" => Resource::Approval(id),
            _ => return None,
        })
    }

    pub fn id(&self) -> &str {
        match self {
            Resource::Model(s)
            | Resource::Tool(s)
            | Resource::Document(s)
            | Resource::Dataset(s)
            | Resource::Destination(s)
            | Resource::Agent(s)
            | Resource::Api(s)
            | Resource::Approval(s) => s,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.entity_type(), self.id())
    }
}
