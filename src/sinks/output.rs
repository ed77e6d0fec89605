//! `[module.output]`: where a writing module's records go, one schema for every module that writes
//! (Vector's shape: the sink is configured apart from the component that feeds it). A destination
//! added here (S3, Kafka, ...) reaches every writing module at once.

use std::io;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::{FileOutputConfig, FileSink, RotatingFile, SeriesName, Sink, StdoutSink};

/// Where a module's records go.
///
/// In the config, either the string `"stdout"`, or a table whose `type` is `"stdout"` or `"file"`;
/// a table that gives a `dir` and no `type` is a file output (what configs before `type` existed
/// wrote, still accepted).
#[derive(Debug, Clone, Default)]
pub enum OutputConfig {
    /// Standard output: the journal, under systemd.
    #[default]
    Stdout,
    /// Rotating files in a directory.
    File(FileOutputConfig),
}

impl<'de> Deserialize<'de> for OutputConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = match toml::Value::deserialize(d)? {
            toml::Value::String(s) if s == "stdout" => return Ok(OutputConfig::Stdout),
            toml::Value::String(s) => {
                return Err(D::Error::custom(format!(
                "{s:?} is not an output; use \"stdout\" or a table with type = \"file\" and a dir"
            )))
            }
            toml::Value::Table(t) => t,
            other => {
                return Err(D::Error::custom(format!(
                    "expected \"stdout\" or a table, found {}",
                    other.type_str()
                )))
            }
        };
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => return Err(D::Error::custom("`type` must be a string")),
            None if table.contains_key("dir") => "file".to_owned(),
            None => {
                return Err(D::Error::custom(
                    "missing `type`: \"stdout\", or \"file\" with a dir",
                ))
            }
        };
        match kind.as_str() {
            "stdout" => match table.keys().next() {
                Some(key) => Err(D::Error::custom(format!(
                    "unknown field `{key}`: a stdout output takes no settings"
                ))),
                None => Ok(OutputConfig::Stdout),
            },
            "file" => FileOutputConfig::deserialize(toml::Value::Table(table))
                .map(OutputConfig::File)
                .map_err(|e| D::Error::custom(e.message().trim())),
            other => Err(D::Error::custom(format!(
                "unknown output type {other:?}; known types: stdout, file"
            ))),
        }
    }
}

impl OutputConfig {
    /// Checks values serde cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            OutputConfig::Stdout => Ok(()),
            OutputConfig::File(f) => f.validate(),
        }
    }

    /// The file settings, for a file output.
    pub fn file(&self) -> Option<&FileOutputConfig> {
        match self {
            OutputConfig::Stdout => None,
            OutputConfig::File(f) => Some(f),
        }
    }

    /// A sink for self-contained records (text lines): standard output, or the file series `name`
    /// whose every file starts with `header`. Files of the series' extension (plain and `.gz`) count
    /// toward the directory's size cap.
    pub fn record_sink(&self, name: SeriesName, header: Vec<u8>) -> io::Result<Box<dyn Sink>> {
        match self {
            OutputConfig::Stdout => Ok(Box::<StdoutSink>::default()),
            OutputConfig::File(out) => {
                let ext = format!(".{}", name.ext);
                let cap = out
                    .prepare_dir(&[&ext, &format!("{ext}.gz")])
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("output.dir {}: {e}", out.dir.display()))
                    })?;
                Ok(Box::new(FileSink::new(RotatingFile::new(
                    out, name, header, cap,
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Module {
        output: OutputConfig,
    }

    fn parse(text: &str) -> Result<OutputConfig, String> {
        toml::from_str::<Module>(text)
            .map(|m| m.output)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn every_form_of_output() {
        assert!(matches!(
            parse("output = \"stdout\""),
            Ok(OutputConfig::Stdout)
        ));
        assert!(matches!(
            parse("[output]\ntype = \"stdout\""),
            Ok(OutputConfig::Stdout)
        ));
        let Ok(OutputConfig::File(f)) =
            parse("[output]\ntype = \"file\"\ndir = \"/x\"\ngzip = true")
        else {
            panic!("a file output")
        };
        assert!(f.gzip);
        assert!(matches!(
            parse("[output]\ndir = \"/x\""),
            Ok(OutputConfig::File(_))
        ));
    }

    #[test]
    fn an_s3_table_makes_the_directory_a_spool() {
        let Ok(OutputConfig::File(f)) = parse(
            "[output]\ntype = \"file\"\ndir = \"/spool\"\n[output.s3]\nbucket = \"b\"\nprefix = \"p/\"",
        ) else {
            panic!("a file output")
        };
        let s3 = f.s3.as_ref().expect("an s3 table");
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b", "p/"));
        assert_eq!(s3.spool_max_bytes, 1 << 30);
        assert!(OutputConfig::File(f.clone()).validate().is_ok());
        let err = |t: &str| match parse(t) {
            Ok(o) => o.validate().unwrap_err(),
            Err(e) => e,
        };
        assert!(
            err("[output]\ndir = \"/x\"\n[output.s3]\nbucket = \"b\"\nregoin = \"x\"")
                .contains("unknown field `regoin`")
        );
        assert!(
            err("[output]\ndir = \"/x\"\n[output.s3]\nbucket = \"\"").contains("output.s3.bucket")
        );
        assert!(err(
            "[output]\ndir = \"/x\"\n[output.s3]\nbucket = \"b\"\nendpoint = \"localhost:9000\""
        )
        .contains("output.s3.endpoint"));
        assert!(err("[output]\ndir = \"/x\"\nrotate_secs = 0\nrotate_bytes = 0\n[output.s3]\nbucket = \"b\"")
            .contains("no file ever closes"));
    }

    #[test]
    fn wrong_outputs_say_what_is_wrong() {
        let err = |t: &str| parse(t).unwrap_err();
        assert!(err("output = \"syslog\"").contains("not an output"));
        assert!(err("[output]\ntype = \"s4\"\ndir = \"/x\"").contains("unknown output type \"s4\""));
        assert!(err("[output]\ntype = \"stdout\"\ndir = \"/x\"").contains("unknown field `dir`"));
        assert!(err("[output]\ntype = \"file\"\ndri = \"/x\"").contains("unknown field `dri`"));
        assert!(err("[output]\ngzip = true").contains("missing `type`"));
    }
}
