//! `jwt`: the JWT-SVID profile of the Workload API (SPIFFE Workload API standard, section 5.3:
//! `FetchJWTSVID`, `FetchJWTBundles`). The token is validated here, offline, against the
//! bundles the API sent (JWT-SVID standard, section 4), not by asking the API
//! (`ValidateJWTSVID`): the probe checks that what the zone hands out verifies for a relying
//! party that only has the bundle.

use std::io::Write;

use spiffe::{JwtSvid, WorkloadApiClient};

use crate::client::Api;
use crate::error::ProbeError;

/// `spiffe-probe jwt AUDIENCE`.
pub async fn fetch(api: &Api, audience: &str, out: &mut impl Write) -> Result<(), ProbeError> {
    let (svid, bundles) = api
        .first_contact(|client: WorkloadApiClient| async move {
            let svid = client
                .fetch_jwt_svid([audience], None)
                .await
                .map_err(|source| ProbeError::Api {
                    rpc: "FetchJWTSVID",
                    source,
                })?;
            let bundles = client
                .fetch_jwt_bundles()
                .await
                .map_err(|source| ProbeError::Api {
                    rpc: "FetchJWTBundles",
                    source,
                })?;
            Ok((svid, bundles))
        })
        .await?;
    let valid = JwtSvid::parse_and_validate(svid.token(), &bundles, &[audience])
        .map_err(ProbeError::JwtInvalid)?;
    JwtReport::from_svid(&valid).write_to(out)?;
    Ok(())
}

/// What `spiffe-probe jwt` prints, from a validated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtReport {
    pub spiffe_id: String,
    pub audience: Vec<String>,
    /// `exp`, unix seconds.
    pub expiry: i64,
    pub token: String,
}

impl JwtReport {
    pub fn from_svid(svid: &JwtSvid) -> Self {
        Self {
            spiffe_id: svid.spiffe_id().to_string(),
            audience: svid.audience().to_vec(),
            expiry: svid.expiry().unix_timestamp(),
            token: svid.token().to_owned(),
        }
    }

    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "jwt-spiffe-id={}", self.spiffe_id)?;
        writeln!(out, "jwt-audience={}", self.audience.join(","))?;
        writeln!(out, "jwt-expiry={}", self.expiry)?;
        writeln!(out, "jwt-valid=yes")?;
        writeln!(out, "jwt-token={}", self.token)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_jwt_report_prints_keys_in_order_audience_comma_joined() {
        let report = JwtReport {
            spiffe_id: "spiffe://example.org/zone/web".to_owned(),
            audience: vec!["db".to_owned(), "spiffe://example.org/cache".to_owned()],
            expiry: 1_700_000_300,
            token: "aGVhZGVy.Y2xhaW1z.c2ln".to_owned(),
        };
        let mut out = Vec::new();
        report.write_to(&mut out).expect("writes to a Vec");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "jwt-spiffe-id=spiffe://example.org/zone/web\n\
             jwt-audience=db,spiffe://example.org/cache\n\
             jwt-expiry=1700000300\n\
             jwt-valid=yes\n\
             jwt-token=aGVhZGVy.Y2xhaW1z.c2ln\n"
        );
    }
}
