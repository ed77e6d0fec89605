//! `[module.output]`: where a writing module's records go, one schema for every module that writes
//! (Vector's shape: the sink is configured apart from the component that feeds it). A destination
//! added here (S3, Kafka, ...) reaches every writing module at once.

use std::io;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::{
    FileOutputConfig, FileSink, KafkaConfig, KafkaSink, RotatingFile, SeriesName, Sink, StdoutSink,
};

/// Where a module's records go.
///
/// In the config, either the string `"stdout"`, or a table whose `type` is `"stdout"`, `"file"` or
/// `"kafka"`; a table that gives a `dir` and no `type` is a file output (what configs before `type`
/// existed wrote, still accepted), and one that gives a `kafka` table and no `type` a Kafka output.
#[derive(Debug, Clone, Default)]
pub enum OutputConfig {
    /// Standard output: the journal, under systemd.
    #[default]
    Stdout,
    /// Rotating files in a directory.
    File(FileOutputConfig),
    /// Messages to a Kafka topic, keyed by session (`[module.output.kafka]`).
    Kafka(KafkaConfig),
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
            None if table.contains_key("kafka") => "kafka".to_owned(),
            None => {
                return Err(D::Error::custom(
                    "missing `type`: \"stdout\", \"file\" with a dir, or \"kafka\" with a [kafka] table",
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
            "kafka" => {
                if let Some(key) = table.keys().find(|k| *k != "kafka") {
                    return Err(D::Error::custom(format!(
                        "unknown field `{key}`: a kafka output's settings go in its [kafka] table"
                    )));
                }
                let Some(kafka) = table.remove("kafka") else {
                    return Err(D::Error::custom(
                        "a kafka output needs a [kafka] table with brokers",
                    ));
                };
                serde_path_to_error::deserialize::<_, KafkaConfig>(kafka)
                    .map(OutputConfig::Kafka)
                    .map_err(|e| {
                        let path = e.path().to_string();
                        let msg = e.into_inner().message().trim().to_owned();
                        D::Error::custom(if path == "." {
                            format!("kafka: {msg}")
                        } else {
                            format!("kafka.{path}: {msg}")
                        })
                    })
            }
            other => Err(D::Error::custom(format!(
                "unknown output type {other:?}; known types: stdout, file, kafka"
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
            OutputConfig::Kafka(k) => k.validate(),
        }
    }

    /// The file settings, for a file output.
    pub fn file(&self) -> Option<&FileOutputConfig> {
        match self {
            OutputConfig::File(f) => Some(f),
            OutputConfig::Stdout | OutputConfig::Kafka(_) => None,
        }
    }

    /// The Kafka settings, for a Kafka output.
    pub fn kafka(&self) -> Option<&KafkaConfig> {
        match self {
            OutputConfig::Kafka(k) => Some(k),
            OutputConfig::Stdout | OutputConfig::File(_) => None,
        }
    }

    /// A sink for self-contained records (text lines): standard output, the file series `name`
    /// whose every file starts with `header`, or the output's Kafka producer (no header: each
    /// record is a message of its own). Files of the series' extension (plain and `.gz`) count
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
            OutputConfig::Kafka(kafka) => {
                let producer = kafka.producer(module_of(&name.stem))?;
                Ok(Box::new(KafkaSink::new(producer)))
            }
        }
    }
}

/// The module a series belongs to, for a Kafka output's default topic: every module names its
/// series `<kind>-shard<N>` when its output is not a file layout of its own.
fn module_of(stem: &str) -> &str {
    match stem.rsplit_once("-shard") {
        Some((module, shard))
            if !module.is_empty()
                && !shard.is_empty()
                && shard.bytes().all(|b| b.is_ascii_digit()) =>
        {
            module
        }
        _ => stem,
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
        assert!(err(
            "[output]\ndir = \"/x\"\n[output.s3]\nbucket = \"b\"\nmultipart_part_bytes = 1000"
        )
        .contains("output.s3.multipart_part_bytes"));
        assert!(err(
            "[output]\ndir = \"/x\"\n[output.s3]\nbucket = \"b\"\nmultipart_threshold_bytes = 6000000"
        )
        .contains("less than multipart_part_bytes"));
        assert!(err("[output]\ndir = \"/x\"\nrotate_secs = 0\nrotate_bytes = 0\n[output.s3]\nbucket = \"b\"")
            .contains("no file ever closes"));
    }

    #[test]
    fn a_kafka_table_makes_a_kafka_output() {
        let Ok(OutputConfig::Kafka(k)) =
            parse("[output.kafka]\nbrokers = [\"127.0.0.1:9092\"]\ncompression = \"gzip\"")
        else {
            panic!("a kafka output")
        };
        assert_eq!(k.compression, super::super::KafkaCompression::Gzip);
        assert_eq!(k.topic, None);
        assert!(OutputConfig::Kafka(k).validate().is_ok());
        assert!(matches!(
            parse("[output]\ntype = \"kafka\"\n[output.kafka]\nbrokers = [\"b:1\"]\ntopic = \"t\""),
            Ok(OutputConfig::Kafka(KafkaConfig { topic: Some(_), .. }))
        ));
        let err = |t: &str| match parse(t) {
            Ok(o) => o.validate().unwrap_err(),
            Err(e) => e,
        };
        assert!(err("[output]\ntype = \"kafka\"").contains("needs a [kafka] table"));
        assert!(
            err("[output]\ntype = \"kafka\"\ndir = \"/x\"\n[output.kafka]\nbrokers = []")
                .contains("unknown field `dir`")
        );
        assert!(
            err("[output.kafka]\nbrokers = [\"b:1\"]\ncompression = \"zip\"")
                .contains("kafka.compression")
        );
        assert!(err("[output.kafka]\nbrokers = [\"b:1\"]\nbrokres = 1")
            .contains("unknown field `brokres`"));
        assert!(err("[output.kafka]\nbrokers = [\"b\"]").contains("output.kafka.brokers"));
    }

    #[test]
    fn the_default_topic_is_named_after_the_module() {
        assert_eq!(module_of("flowlog-shard0"), "flowlog");
        assert_eq!(module_of("http-shard12"), "http");
        assert_eq!(module_of("odd"), "odd");
        assert_eq!(module_of("x-shardy"), "x-shardy");
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
