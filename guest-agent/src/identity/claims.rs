//! JWT claims (a JSON object) as the `google.protobuf.Struct` ValidateJWTSVID returns.
//! JSON numbers become doubles, as the Struct's JSON mapping has them.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Value as Json};

/// `claims` as a Struct, key for key.
pub fn to_struct(claims: Map<String, Json>) -> Struct {
    Struct {
        fields: claims
            .into_iter()
            .map(|(key, value)| (key, to_value(value)))
            .collect(),
    }
}

fn to_value(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(to_struct(map)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_to_struct_every_json_kind() {
        let json = serde_json::json!({
            "sub": "spiffe://example.org/w",
            "aud": ["a", "b"],
            "exp": 1700000000u64,
            "nested": {"ok": true, "none": null},
        });
        let Json::Object(map) = json else {
            panic!("an object")
        };

        let claims = to_struct(map);

        let kind = |key: &str| claims.fields[key].kind.clone().unwrap();
        assert_eq!(
            kind("sub"),
            Kind::StringValue("spiffe://example.org/w".into())
        );
        assert_eq!(kind("exp"), Kind::NumberValue(1_700_000_000.0));
        let Kind::ListValue(aud) = kind("aud") else {
            panic!("aud is a list")
        };
        assert_eq!(aud.values.len(), 2);
        let Kind::StructValue(nested) = kind("nested") else {
            panic!("nested is a struct")
        };
        assert_eq!(nested.fields["ok"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(nested.fields["none"].kind, Some(Kind::NullValue(0)));
    }
}
