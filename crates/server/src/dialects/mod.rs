//! The APIs filedock speaks. Each dialect parses its own request shapes, calls core, and renders
//! its own answers and error envelope; none holds a business rule.

pub mod native;
