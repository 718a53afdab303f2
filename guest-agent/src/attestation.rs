//! The agent's side of attestation: it operates the zone's vTPM (`/dev/tpmrm0`) for the host
//! and decides nothing. The TPM is opened on first use; its commands block, so they run off
//! the async threads, one at a time.

use std::sync::{Arc, Mutex};

use zone_attest::activation::CredentialChallenge;
use zone_attest::device_attester::{AttesterError, DeviceTransport, TpmAttester};
use zone_attest::protocol::{Attester, RawQuote};
use zone_attest::tpm_types::TpmPublic;

use crate::request_error::{report, RequestError};

/// Most qualifying data TPM2_Quote takes.
const MAX_NONCE: usize = 64;
/// PCR indices a SHA-256 bank has.
const PCR_COUNT: u32 = 24;

type ZoneAttester = TpmAttester<DeviceTransport>;

/// The zone's TPM, opened when first asked for.
#[derive(Debug, Default)]
pub struct ZoneTpm {
    attester: Arc<Mutex<Option<ZoneAttester>>>,
}

impl ZoneTpm {
    pub fn new() -> Self {
        Self::default()
    }

    /// The EK and AK publics.
    pub async fn keys(&self) -> Result<(TpmPublic, TpmPublic), RequestError> {
        self.with(|tpm| Ok((tpm.ek_public()?, tpm.ak_public()?)))
            .await
    }

    pub async fn activate_credential(
        &self,
        challenge: CredentialChallenge,
    ) -> Result<Vec<u8>, RequestError> {
        self.with(move |tpm| tpm.activate_credential(&challenge))
            .await
    }

    /// A quote of `pcrs` over `nonce`, and the event log.
    pub async fn quote(
        &self,
        nonce: Vec<u8>,
        pcrs: Vec<u32>,
    ) -> Result<(RawQuote, Vec<u8>), RequestError> {
        if nonce.len() > MAX_NONCE {
            return Err(RequestError::InvalidArgument(format!(
                "nonce of {} bytes; a quote takes at most {MAX_NONCE}",
                nonce.len()
            )));
        }
        if pcrs.is_empty() {
            return Err(RequestError::InvalidArgument(
                "no PCRs to quote".to_string(),
            ));
        }
        if let Some(bad) = pcrs.iter().find(|&&pcr| pcr >= PCR_COUNT) {
            return Err(RequestError::InvalidArgument(format!(
                "PCR {bad} does not exist (0 to {})",
                PCR_COUNT - 1
            )));
        }
        self.with(move |tpm| Ok((tpm.quote(&nonce, &pcrs)?, tpm.event_log()?)))
            .await
    }

    /// Runs `operation` on the TPM on a blocking thread, opening it first if needed.
    async fn with<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut ZoneAttester) -> Result<T, AttesterError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let attester = Arc::clone(&self.attester);
        tokio::task::spawn_blocking(move || {
            let mut slot = attester
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if slot.is_none() {
                let opened = ZoneAttester::open_zone_tpm().map_err(|e| {
                    RequestError::FailedPrecondition(format!(
                        "this zone has no usable TPM (started without a vTPM?): {}",
                        report(&e)
                    ))
                })?;
                *slot = Some(opened);
            }
            let tpm = slot.as_mut().ok_or_else(|| {
                RequestError::Internal("the TPM slot is empty after opening".to_string())
            })?;
            operation(tpm).map_err(|e| RequestError::Internal(format!("zone TPM: {}", report(&e))))
        })
        .await
        .map_err(|e| RequestError::Internal(format!("TPM worker: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // These are refused before the TPM is opened, so they need none.
    #[tokio::test]
    async fn test_quote_bad_nonce_and_pcrs_refused_by_name() {
        let tpm = ZoneTpm::new();
        for (nonce, pcrs, named) in [
            (vec![0u8; 65], vec![0], "65 bytes"),
            (vec![1u8; 32], vec![], "no PCRs"),
            (vec![1u8; 32], vec![0, 24], "PCR 24"),
        ] {
            let err = tpm.quote(nonce, pcrs).await.unwrap_err();
            assert!(matches!(err, RequestError::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains(named), "{err}");
        }
    }
}
