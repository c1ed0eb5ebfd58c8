//! Workflows as the config declares them (`[[workflows]]`): an id, an optional slug, the project
//! they belong to, and typed parameters. A run checks its parameters against them (the
//! `tasks` module).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ProjectId;

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A file of the same project, by its `file_key` or `path` reference; the runner gets it as
    /// `{file_key, download_url, …}`.
    File,
}

impl ParamType {
    /// How the type is named in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::File => "file",
        }
    }
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// A run without it is refused (400). Default false.
    #[serde(default)]
    pub required: bool,
}

/// A workflow a project's clients can run and its runners execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Unique across the deployment: `[A-Za-z0-9_-]{1,64}`.
    pub id: String,
    /// Unique within its project; runs may name the workflow by it.
    #[serde(default)]
    pub slug: Option<String>,
    /// The project whose keys may run it and whose device keys run it.
    pub project: String,
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
}

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::invalid(format!(
            "{what} '{s}' must be 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// The declared workflows, checked and indexed.
#[derive(Debug, Clone, Default)]
pub struct Workflows {
    by_id: BTreeMap<String, Workflow>,
    /// (project, slug) → id.
    by_slug: BTreeMap<(String, String), String>,
}

impl Workflows {
    /// Checks the declarations: valid ids, slugs, projects and parameter names; no id twice, no
    /// slug twice in one project, no parameter twice in one workflow.
    pub fn new(list: Vec<Workflow>) -> Result<Self> {
        let mut w = Workflows::default();
        for wf in list {
            check_name("workflow id", &wf.id)?;
            ProjectId::new(wf.project.clone()).map_err(|e| Error::invalid(format!("workflow '{}': {e}", wf.id)))?;
            let mut names = BTreeSet::new();
            for p in &wf.parameters {
                check_name(&format!("workflow '{}': parameter name", wf.id), &p.name)?;
                if !names.insert(p.name.clone()) {
                    return Err(Error::invalid(format!(
                        "workflow '{}' declares parameter '{}' twice",
                        wf.id, p.name
                    )));
                }
            }
            if let Some(slug) = &wf.slug {
                check_name(&format!("workflow '{}': slug", wf.id), slug)?;
                if w.by_slug
                    .insert((wf.project.clone(), slug.clone()), wf.id.clone())
                    .is_some()
                {
                    return Err(Error::invalid(format!(
                        "two workflows of project '{}' have the slug '{slug}'",
                        wf.project
                    )));
                }
            }
            if w.by_id.contains_key(&wf.id) {
                return Err(Error::invalid(format!("two workflows have the id '{}'", wf.id)));
            }
            w.by_id.insert(wf.id.clone(), wf);
        }
        Ok(w)
    }

    /// A project's workflow by id.
    pub fn by_id(&self, project: &ProjectId, id: &str) -> Option<&Workflow> {
        self.by_id.get(id).filter(|w| w.project == project.as_str())
    }

    /// A project's workflow by slug.
    pub fn by_slug(&self, project: &ProjectId, slug: &str) -> Option<&Workflow> {
        self.by_slug
            .get(&(project.as_str().to_owned(), slug.to_owned()))
            .and_then(|id| self.by_id.get(id))
    }

    /// A workflow by id, whatever its project.
    pub fn get(&self, id: &str) -> Option<&Workflow> {
        self.by_id.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(id: &str, slug: Option<&str>, project: &str, params: &[(&str, ParamType)]) -> Workflow {
        Workflow {
            id: id.into(),
            slug: slug.map(Into::into),
            project: project.into(),
            parameters: params
                .iter()
                .map(|(n, k)| ParameterSpec {
                    name: (*n).into(),
                    kind: *k,
                    required: false,
                })
                .collect(),
        }
    }

    #[test]
    fn declarations_are_checked_and_scoped_by_project() {
        let demo = ProjectId::new("demo").unwrap();
        let other = ProjectId::new("other").unwrap();
        let w = Workflows::new(vec![
            wf("wf_a", Some("a"), "demo", &[("x", ParamType::File)]),
            wf("wf_b", Some("a"), "other", &[]),
        ])
        .unwrap();
        assert_eq!(w.by_id(&demo, "wf_a").map(|w| w.id.as_str()), Some("wf_a"));
        assert!(
            w.by_id(&other, "wf_a").is_none(),
            "another project's workflow is not found"
        );
        assert_eq!(w.by_slug(&other, "a").map(|w| w.id.as_str()), Some("wf_b"));
        assert_eq!(w.by_slug(&demo, "a").map(|w| w.id.as_str()), Some("wf_a"));

        for bad in [
            vec![wf("wf_a", None, "demo", &[]), wf("wf_a", None, "demo", &[])],
            vec![wf("wf_a", Some("s"), "demo", &[]), wf("wf_b", Some("s"), "demo", &[])],
            vec![wf("wf a", None, "demo", &[])],
            vec![wf("wf_a", None, "files", &[])],
            vec![wf(
                "wf_a",
                None,
                "demo",
                &[("x", ParamType::String), ("x", ParamType::File)],
            )],
            vec![wf("wf_a", Some("a/b"), "demo", &[])],
        ] {
            assert!(Workflows::new(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
