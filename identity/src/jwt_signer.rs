//! The host's side of the agent's `JwtSigner` stream: JWT-SVIDs are signed here, never in
//! the zone, and only for the SPIFFE ID the zone holds at that moment (none after a refusal).
//! The asks come from the guest: their audiences are bounded and checked before signing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use zone_attest::identity::authority::IdentityAuthority;
use zone_attest::identity::spiffe_id::SpiffeId;
use zone_proto::agent::v1::jwt_signer_answer::Result as Answer;
use zone_proto::agent::v1::{JwtSignerAnswer, JwtSignerAsk};

use crate::{describe, Client};

/// Most audiences one JWT-SVID may name.
const MAX_AUDIENCES: usize = 16;
/// Longest audience, in bytes.
const MAX_AUDIENCE_LEN: usize = 256;

/// The SPIFFE ID JWT-SVIDs are signed for now: set when an X.509-SVID is issued, cleared
/// when the zone is refused.
pub type CurrentId = Arc<Mutex<Option<SpiffeId>>>;

/// What signs: the authority, for how long, as whom.
#[derive(Debug, Clone)]
pub struct Signer {
    pub authority: Arc<IdentityAuthority>,
    pub ttl: Duration,
    pub current: CurrentId,
}

impl Signer {
    /// The answer to one ask.
    pub fn answer(&self, ask: &JwtSignerAsk) -> JwtSignerAnswer {
        JwtSignerAnswer {
            id: ask.id,
            result: Some(match self.sign(&ask.audience) {
                Ok(token) => Answer::Token(token),
                Err(error) => Answer::Error(error),
            }),
        }
    }

    fn sign(&self, audience: &[String]) -> Result<String, String> {
        check_audience(audience)?;
        let id = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or("this zone holds no SPIFFE identity now")?;
        self.authority
            .mint_jwt_svid(&id, audience, self.ttl)
            .map_err(|e| format!("the identity authority: {e}"))
    }
}

fn check_audience(audience: &[String]) -> Result<(), String> {
    if audience.is_empty() {
        return Err("a JWT-SVID needs at least one audience".to_string());
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(format!(
            "{} audiences; at most {MAX_AUDIENCES}",
            audience.len()
        ));
    }
    for aud in audience {
        if aud.is_empty() || aud.len() > MAX_AUDIENCE_LEN || aud.chars().any(char::is_control) {
            return Err(format!(
                "audience {aud:?} must be 1 to {MAX_AUDIENCE_LEN} bytes without control characters"
            ));
        }
    }
    Ok(())
}

/// Opens the stream and answers asks until the zone goes away.
pub async fn serve(mut client: Client, signer: Signer) -> anyhow::Result<()> {
    let (answers, outbound) = mpsc::channel(16);
    let mut asks = client
        .jwt_signer(ReceiverStream::new(outbound))
        .await
        .map_err(|status| anyhow::anyhow!("opening JwtSigner: {}", describe(&status)))?
        .into_inner();
    while let Some(ask) = asks
        .message()
        .await
        .map_err(|status| anyhow::anyhow!("JwtSigner: {}", describe(&status)))?
    {
        if answers.send(signer.answer(&ask)).await.is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zone_attest::identity::spiffe_id::TrustDomain;

    fn signer(current: Option<&str>) -> Signer {
        let td = TrustDomain::parse("zones.test").expect("td");
        Signer {
            authority: Arc::new(IdentityAuthority::ephemeral(&td)),
            ttl: Duration::from_secs(60),
            current: Arc::new(Mutex::new(
                current.map(|id| SpiffeId::parse(id).expect("id")),
            )),
        }
    }

    fn ask(audience: &[&str]) -> JwtSignerAsk {
        JwtSignerAsk {
            id: 7,
            audience: audience.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn test_signer_signs_for_the_current_id_only() {
        let s = signer(Some("spiffe://zones.test/zone/web"));
        let answer = s.answer(&ask(&["db"]));
        assert_eq!(answer.id, 7);
        let Some(Answer::Token(token)) = answer.result else {
            panic!("no token: {answer:?}");
        };
        let (id, _) = zone_attest::identity::jwt::validate_jwt_svid(
            &token,
            s.authority.jwt_bundle().as_bytes(),
            "db",
            std::time::SystemTime::now(),
        )
        .expect("valid");
        assert_eq!(id.to_string(), "spiffe://zones.test/zone/web");

        let refused = signer(None).answer(&ask(&["db"]));
        assert!(
            matches!(&refused.result, Some(Answer::Error(e)) if e.contains("no SPIFFE identity")),
            "{refused:?}"
        );
    }

    #[test]
    fn test_signer_refuses_bad_audiences_from_the_guest() {
        let s = signer(Some("spiffe://zones.test/zone/web"));
        let too_many: Vec<String> = (0..17).map(|i| format!("a{i}")).collect();
        let long = "x".repeat(257);
        for audience in [
            vec![],
            vec![String::new()],
            vec!["a\nb".to_string()],
            vec![long],
            too_many,
        ] {
            let answer = s.answer(&JwtSignerAsk { id: 1, audience });
            assert!(
                matches!(answer.result, Some(Answer::Error(_))),
                "{answer:?}"
            );
        }
    }
}
