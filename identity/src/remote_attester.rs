//! The zone's TPM as the host reaches it: the agent's TpmKeys, ActivateCredential and Quote
//! calls, behind zone-attest's `Attester` trait so the protocol code runs unchanged.

use tokio::runtime::Runtime;
use zone_attest::activation::CredentialChallenge;
use zone_attest::protocol::{Attester, RawQuote};
use zone_attest::quote::PcrBank;
use zone_attest::tpm_types::TpmPublic;
use zone_proto::agent::v1::{ActivateCredentialRequest, QuoteRequest, TpmKeysRequest};

use crate::{describe, Client};

#[derive(Debug, thiserror::Error)]
pub enum RemoteTpmError {
    #[error("the zone agent: {0}")]
    Agent(String),
    #[error("the zone sent a bad {what}: {detail}")]
    BadAnswer { what: &'static str, detail: String },
    #[error("no event log yet: it comes with the quote")]
    NoEventLog,
}

/// The zone's TPM through its agent.
#[derive(Debug)]
pub struct RemoteAttester<'a> {
    client: Client,
    runtime: &'a Runtime,
    event_log: Option<Vec<u8>>,
}

impl<'a> RemoteAttester<'a> {
    pub fn new(client: Client, runtime: &'a Runtime) -> Self {
        Self {
            client,
            runtime,
            event_log: None,
        }
    }

    fn keys(&mut self) -> Result<(TpmPublic, TpmPublic), RemoteTpmError> {
        let keys = self
            .runtime
            .block_on(self.client.tpm_keys(TpmKeysRequest {}))
            .map_err(|status| RemoteTpmError::Agent(describe(&status)))?
            .into_inner();
        let parse = |what, bytes: &[u8]| {
            TpmPublic::from_tpm2b(bytes).map_err(|e| RemoteTpmError::BadAnswer {
                what,
                detail: e.to_string(),
            })
        };
        Ok((parse("EK", &keys.ek_public)?, parse("AK", &keys.ak_public)?))
    }
}

impl Attester for RemoteAttester<'_> {
    type Error = RemoteTpmError;

    fn ek_public(&mut self) -> Result<TpmPublic, RemoteTpmError> {
        Ok(self.keys()?.0)
    }

    fn ak_public(&mut self) -> Result<TpmPublic, RemoteTpmError> {
        Ok(self.keys()?.1)
    }

    fn activate_credential(
        &mut self,
        challenge: &CredentialChallenge,
    ) -> Result<Vec<u8>, RemoteTpmError> {
        let request = ActivateCredentialRequest {
            credential_blob: challenge.credential_blob.clone(),
            encrypted_secret: challenge.encrypted_secret.clone(),
        };
        let answer = self
            .runtime
            .block_on(self.client.activate_credential(request))
            .map_err(|status| RemoteTpmError::Agent(describe(&status)))?;
        Ok(answer.into_inner().secret)
    }

    fn quote(&mut self, nonce: &[u8], pcrs: &[u32]) -> Result<RawQuote, RemoteTpmError> {
        let request = QuoteRequest {
            nonce: nonce.to_vec(),
            pcrs: pcrs.to_vec(),
        };
        let answer = self
            .runtime
            .block_on(self.client.quote(request))
            .map_err(|status| RemoteTpmError::Agent(describe(&status)))?
            .into_inner();
        let bad = |detail: String| RemoteTpmError::BadAnswer {
            what: "quote",
            detail,
        };
        if answer.pcr_indices.len() != answer.pcr_values.len() {
            return Err(bad(format!(
                "{} PCR indices but {} values",
                answer.pcr_indices.len(),
                answer.pcr_values.len()
            )));
        }
        let mut bank = PcrBank::new();
        for (index, value) in answer.pcr_indices.iter().zip(&answer.pcr_values) {
            let value: [u8; 32] = value
                .as_slice()
                .try_into()
                .map_err(|_| bad(format!("PCR {index} has {} bytes, not 32", value.len())))?;
            bank.insert(*index, value);
        }
        self.event_log = Some(answer.event_log);
        Ok(RawQuote {
            attest: answer.attest,
            signature: answer.signature,
            pcrs: bank,
        })
    }

    fn event_log(&mut self) -> Result<Vec<u8>, RemoteTpmError> {
        self.event_log.clone().ok_or(RemoteTpmError::NoEventLog)
    }
}
