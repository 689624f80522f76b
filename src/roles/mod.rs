//! The five roles. They never import each other: they share only `crate::proto` messages,
//! and `crate::node` wires them together.
pub mod allocateserver;
pub mod apiserver;
pub mod fsserver;
pub mod sfuserver;
pub mod turnserver;
