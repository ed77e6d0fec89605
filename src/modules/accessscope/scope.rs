//! The Network Access Scope document as AWS users hold it, in both of its forms: the input of
//! `aws ec2 create-network-insights-access-scope --cli-input-json` (`{"MatchPaths": [...],
//! "ExcludePaths": [...]}`, with the CLI's `ClientToken`, `TagSpecifications` and `DryRun` allowed
//! beside them) and the output of `aws ec2 get-network-insights-access-scope-content` (the same
//! under `NetworkInsightsAccessScopeContent`, with the scope's id). Field names are the EC2 API's
//! (`AccessScopePathRequest`, `PathStatementRequest`, `PacketHeaderStatementRequest`,
//! `ResourceStatementRequest`, `ThroughResourcesStatementRequest`).
//!
//! Inside a path every key is checked (`deny_unknown_fields`): a misspelt `DestinationPort` that
//! was silently dropped would widen the scope, and a compliance alarm that fires on everything is
//! as useless as one that never fires. Errors name the file and the JSON path.

use std::path::Path;

use serde::Deserialize;

/// A scope document, parsed; `paths` keep each path's JSON for records.
#[derive(Debug, Clone)]
pub(crate) struct ScopeDocument {
    /// `NetworkInsightsAccessScopeId`, when the document is `get-…-content` output.
    pub(crate) id: Option<String>,
    /// The `Name` tag of `TagSpecifications`, when given.
    pub(crate) name: Option<String>,
    /// The `Description` tag, when given.
    pub(crate) description: Option<String>,
    /// The JSON path prefix of the paths (`NetworkInsightsAccessScopeContent.` or empty).
    pub(crate) prefix: &'static str,
    /// `MatchPaths`, each with its compact JSON.
    pub(crate) match_paths: Vec<(AccessScopePath, String)>,
    /// `ExcludePaths`, each with its compact JSON.
    pub(crate) exclude_paths: Vec<(AccessScopePath, String)>,
}

/// `AccessScopePathRequest` (and `AccessScopePath` in `get-…-content` output).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct AccessScopePath {
    pub(crate) source: Option<PathStatement>,
    pub(crate) destination: Option<PathStatement>,
    pub(crate) through_resources: Option<Vec<ThroughResourcesStatement>>,
}

/// `PathStatementRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct PathStatement {
    pub(crate) packet_header_statement: Option<PacketHeaderStatement>,
    pub(crate) resource_statement: Option<ResourceStatement>,
}

/// `PacketHeaderStatementRequest`: about the packets the path's source sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct PacketHeaderStatement {
    pub(crate) source_addresses: Option<Vec<String>>,
    pub(crate) destination_addresses: Option<Vec<String>>,
    pub(crate) source_ports: Option<Vec<String>>,
    pub(crate) destination_ports: Option<Vec<String>>,
    pub(crate) source_prefix_lists: Option<Vec<String>>,
    pub(crate) destination_prefix_lists: Option<Vec<String>>,
    pub(crate) protocols: Option<Vec<String>>,
}

/// `ResourceStatementRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct ResourceStatement {
    pub(crate) resources: Option<Vec<String>>,
    pub(crate) resource_types: Option<Vec<String>>,
}

/// `ThroughResourcesStatementRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct ThroughResourcesStatement {
    // Never evaluated (a mirror does not see hops), but parsed so that its keys are checked.
    #[allow(dead_code)]
    pub(crate) resource_statement: Option<ResourceStatement>,
}

/// The document's top level, in either form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Content {
    network_insights_access_scope_id: Option<String>,
    #[serde(default)]
    match_paths: Vec<serde_json::Value>,
    #[serde(default)]
    exclude_paths: Vec<serde_json::Value>,
    // The create CLI's own keys, accepted so that a `--cli-input-json` file is read as is.
    #[serde(default)]
    client_token: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    dry_run: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    tag_specifications: Vec<TagSpecification>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagSpecification {
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    #[serde(default)]
    value: String,
}

/// Reads a scope document; the error names `file` and the JSON path.
pub(crate) fn load(file: &Path) -> Result<ScopeDocument, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("scope {}: cannot read: {e}", file.display()))?;
    parse(&text).map_err(|e| format!("scope {}: {e}", file.display()))
}

/// Parses a scope document's text; the error starts with the JSON path.
pub(crate) fn parse(text: &str) -> Result<ScopeDocument, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let (prefix, mut content) = match value {
        serde_json::Value::Object(mut map)
            if map.contains_key("NetworkInsightsAccessScopeContent") =>
        {
            if map.len() > 1 {
                let other = map
                    .keys()
                    .find(|k| *k != "NetworkInsightsAccessScopeContent")
                    .cloned()
                    .unwrap_or_default();
                return Err(format!(
                    "{other}: unknown key beside NetworkInsightsAccessScopeContent"
                ));
            }
            let inner = map
                .remove("NetworkInsightsAccessScopeContent")
                .unwrap_or_default();
            ("NetworkInsightsAccessScopeContent.", inner)
        }
        other => ("", other),
    };
    if !content.is_object() {
        return Err(format!(
            "{}: a scope is an object with MatchPaths (and ExcludePaths)",
            if prefix.is_empty() {
                "."
            } else {
                prefix.trim_end_matches('.')
            }
        ));
    }
    let top: Content = serde_path_to_error::deserialize(content.take())
        .map_err(|e| located(prefix, &e.path().to_string(), e.inner()))?;
    if top.match_paths.is_empty() {
        return Err(format!(
            "{prefix}MatchPaths: a scope needs at least one path to match"
        ));
    }
    let paths = |list: Vec<serde_json::Value>,
                 key: &str|
     -> Result<Vec<(AccessScopePath, String)>, String> {
        list.into_iter()
            .enumerate()
            .map(|(i, v)| {
                let json = v.to_string();
                let path: AccessScopePath = serde_path_to_error::deserialize(v)
                    .map_err(|e| located(prefix, &format!("{key}[{i}].{}", e.path()), e.inner()))?;
                Ok((path, json))
            })
            .collect()
    };
    let tag = |name: &str| {
        top.tag_specifications
            .iter()
            .flat_map(|t| &t.tags)
            .find(|t| t.key == name)
            .map(|t| t.value.clone())
    };
    let (name, description) = (tag("Name"), tag("Description"));
    let _ = (&top.client_token, &top.dry_run);
    Ok(ScopeDocument {
        id: top.network_insights_access_scope_id,
        name,
        description,
        prefix,
        match_paths: paths(top.match_paths, "MatchPaths")?,
        exclude_paths: paths(top.exclude_paths, "ExcludePaths")?,
    })
}

fn located(prefix: &str, path: &str, e: &serde_json::Error) -> String {
    // serde_path_to_error says "." for the top level and appends nothing for a failure in place.
    let path = path.trim_end_matches('.');
    let path = if path.is_empty() || path == "." {
        prefix.trim_end_matches('.').to_owned()
    } else {
        format!("{prefix}{path}")
    };
    let path = if path.is_empty() {
        ".".to_owned()
    } else {
        path
    };
    // serde_json appends " at line L column C": the path says more, the position helps with a file.
    format!("{path}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read_the_same_paths() {
        let create = r#"{"MatchPaths":[{"Source":{"ResourceStatement":{"ResourceTypes":["AWS::EC2::NetworkInterface"]}}}],
            "ClientToken":"x","TagSpecifications":[{"ResourceType":"network-insights-access-scope",
            "Tags":[{"Key":"Name","Value":"eni-egress"},{"Key":"Description","Value":"why"}]}]}"#;
        let get = r#"{"NetworkInsightsAccessScopeContent":{"NetworkInsightsAccessScopeId":"nis-1",
            "MatchPaths":[{"Source":{"ResourceStatement":{"ResourceTypes":["AWS::EC2::NetworkInterface"]}}}]}}"#;
        let a = parse(create).unwrap();
        let b = parse(get).unwrap();
        assert_eq!(a.match_paths[0].1, b.match_paths[0].1);
        assert_eq!(a.name.as_deref(), Some("eni-egress"));
        assert_eq!(a.description.as_deref(), Some("why"));
        assert_eq!(b.id.as_deref(), Some("nis-1"));
        assert_eq!(b.prefix, "NetworkInsightsAccessScopeContent.");
        assert!(a.exclude_paths.is_empty());
    }

    #[test]
    fn errors_name_the_json_path() {
        let err = |t: &str| parse(t).unwrap_err();
        let e = err(
            r#"{"MatchPaths":[{"Source":{}},{"Destination":{"PacketHeaderStatement":{"DestinationPort":["22"]}}}]}"#,
        );
        assert!(
            e.starts_with(
                "MatchPaths[1].Destination.PacketHeaderStatement.DestinationPort: unknown field"
            ),
            "{e}"
        );
        let e = err(
            r#"{"NetworkInsightsAccessScopeContent":{"MatchPaths":[{"Source":{"ResourceStatement":{"Resources":"eni-1"}}}]}}"#,
        );
        assert!(
            e.starts_with("NetworkInsightsAccessScopeContent.MatchPaths[0].Source.ResourceStatement.Resources: invalid type"),
            "{e}"
        );
        assert!(err(r#"{"ExcludePaths":[]}"#).starts_with("MatchPaths: a scope needs"));
        assert!(err(r#"{"MatchPath":[]}"#).contains("MatchPath"));
        assert!(err("[1]").starts_with(".: a scope is an object"));
        assert!(err("{").starts_with("not JSON"));
    }
}
