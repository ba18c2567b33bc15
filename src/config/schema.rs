//! The JSON Schema (draft-07) of a probe file, for editors and `slowburn schema`.
//!
//! It is generated from the same types the loader deserializes (each spec derives
//! `schemars::JsonSchema`, so its keys, `deny_unknown_fields` and doc comments carry over) and
//! from the kind tables: a probe's kind keys come from `probe::kind_schemas` (one per row of
//! `kinds!`), a notifier's from `notify::kind_schemas`. A new kind appears here with no edit.
//!
//! The schema describes what the loader accepts; it checks no values (URLs, durations,
//! regexes): `slowburn check` does that, with positions.

use serde_json::{Map, Value, json};

use super::alerting::{PolicySpec, SilenceSpec};
use super::loader::{DefaultsSpec, SECTIONS, ServerSpec, StorageSpec};
use super::oncall::{PersonSpec, RouteSpec, ScheduleSpec};
use super::probe_entry::ProbeEntry;
use crate::{notify, probe};

/// The JSON Schema of a probe file, as `slowburn schema` prints it.
pub fn schema() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut sections = Map::new();
    for &section in SECTIONS {
        let schema = match section {
            "server" => generator.subschema_for::<ServerSpec>().to_value(),
            "storage" => generator.subschema_for::<StorageSpec>().to_value(),
            "defaults" => generator.subschema_for::<DefaultsSpec>().to_value(),
            "probes" => list(probe_item(&mut generator)),
            "notifiers" => list(notifier_item(&mut generator)),
            "policies" => list(generator.subschema_for::<PolicySpec>().to_value()),
            "silences" => list(generator.subschema_for::<SilenceSpec>().to_value()),
            "watchdog" => generator
                .subschema_for::<crate::watchdog::WatchdogSpec>()
                .to_value(),
            "people" => list(generator.subschema_for::<PersonSpec>().to_value()),
            "schedules" => list(generator.subschema_for::<ScheduleSpec>().to_value()),
            "routes" => list(generator.subschema_for::<RouteSpec>().to_value()),
            "modules" => json!({
                "type": ["object", "null"],
                "description": "blackbox_exporter modules, in blackbox.yml's syntax, served at /probe and named by entries' `module:`.",
                "additionalProperties": generator
                    .subschema_for::<crate::blackbox::ModuleSpec>()
                    .to_value(),
            }),
            other => unreachable!("section `{other}` has no schema: add its arm here"),
        };
        sections.insert(section.to_string(), schema);
    }
    let definitions = generator.take_definitions(true);
    let mut root = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "slowburn probe file",
        "description": concat!(
            "A slowburn probe file (schema of slowburn ",
            env!("CARGO_PKG_VERSION"),
            "). Values such as URLs, durations and regexes are checked by `slowburn check`."
        ),
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": sections,
        "definitions": definitions,
    });
    scalars_as_text(&mut root);
    root
}

/// A probe entry: its own keys and every kind's section, exactly one kind given.
fn probe_item(generator: &mut schemars::SchemaGenerator) -> Value {
    let own = generator.subschema_for::<ProbeEntry>().to_value();
    let mut kinds = probe::kind_schemas(generator);
    // A listed target fills a kind's address, so an entry of `targets:` leaves it out.
    for (key, schema) in &mut kinds {
        let target_key = probe::TARGET_KEYS.iter().find(|(k, _)| k == key);
        if let Some((_, Some(field))) = target_key {
            let mut value = resolve(generator, schema.clone().to_value());
            if let Some(required) = value["required"].as_array_mut() {
                required.retain(|r| r != field);
            }
            *schema = schemars::Schema::try_from(value).expect("a kind's schema is an object");
        }
    }
    let mut item = with_kinds(generator, own, kinds);
    // An entry of targets may name a module instead of a kind.
    if let Some(one_of) = item["oneOf"].as_array_mut() {
        one_of.push(json!({"required": ["module"]}));
    }
    item
}

/// A notifier entry: a name and exactly one kind's section.
fn notifier_item(generator: &mut schemars::SchemaGenerator) -> Value {
    let own = json!({
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "description": "The notifier's name, as policies name it."}},
    });
    let kinds = notify::kind_schemas(generator);
    with_kinds(generator, own, kinds)
}

/// `own` (an object schema, or a reference to one) with each kind's key beside its keys, no
/// other key, and exactly one kind.
fn with_kinds(
    generator: &mut schemars::SchemaGenerator,
    own: Value,
    kinds: Vec<(&'static str, schemars::Schema)>,
) -> Value {
    let mut own = resolve(generator, own);
    let properties = own["properties"]
        .as_object_mut()
        .expect("an entry's schema is an object with properties");
    let mut one_of = Vec::new();
    for (key, schema) in kinds {
        properties.insert(key.to_string(), schema.to_value());
        one_of.push(json!({"required": [key]}));
    }
    own["additionalProperties"] = Value::Bool(false);
    own["oneOf"] = Value::Array(one_of);
    own
}

/// The schema a `$ref` to a definition points at (taken out of the definitions), or `schema`.
fn resolve(generator: &mut schemars::SchemaGenerator, schema: Value) -> Value {
    let name = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
        .map(str::to_string);
    match name {
        Some(name) => generator
            .definitions_mut()
            .remove(&name)
            .expect("a reference made by this generator names one of its definitions"),
        None => schema,
    }
}

fn list(item: Value) -> Value {
    json!({"type": "array", "items": item})
}

/// Where the loader wants text it takes any scalar as written (`tier: 1` is the label "1",
/// `status: [200]` the code "200"), so a plain string type also allows numbers and booleans.
/// Strings with a fixed set of words (`enum`, `const`) keep their words.
fn scalars_as_text(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let fixed = object.contains_key("enum") || object.contains_key("const");
            if let Some(ty) = object.get_mut("type").filter(|_| !fixed) {
                let mut types: Vec<Value> = match &*ty {
                    Value::Array(types) => types.clone(),
                    one => vec![one.clone()],
                };
                if types.contains(&json!("string")) {
                    for extra in ["number", "boolean"] {
                        if !types.contains(&json!(extra)) {
                            types.push(json!(extra));
                        }
                    }
                    *ty = Value::Array(types);
                }
            }
            object.values_mut().for_each(scalars_as_text);
        }
        Value::Array(items) => items.iter_mut().for_each(scalars_as_text),
        _ => {}
    }
}
