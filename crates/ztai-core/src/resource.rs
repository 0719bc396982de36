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
        }
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
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Resource::Model(s)
            | Resource::Tool(s)
            | Resource::Document(s)
            | Resource::Dataset(s)
            | Resource::Destination(s)
            | Resource::Agent(s)
            | Resource::Api(s) => s,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.entity_type(), self.id())
    }
}
