//! Tier 3: attesting a zone in the KVM testbed. A detached zone's evidence (`zonectl
//! attest`) is checked by `zonectl verify` against reference values computed without booting
//! (`zonectl reference`): the good zone is affirmed and an EAR written; a replayed nonce,
//! another hardware shape, another kernel, another image and a CA the verifier does not trust
//! are each refused with the check that caught them. A zone CA whose key lives in a host TPM
//! (a second swtpm) works the same and keeps no key file.

use zone_tests::{testbed_run, value};

#[test]
fn test_attest_verify_reference_good_zone_affirmed_tampering_refused() {
    let out = testbed_run(
        r#"
zonectl image import /zones/images/busybox >/dev/null || echo import-failed
zonectl run -d --name web busybox sleep 1000 >/dev/null
i=0; while ! zonectl ps | grep -q ' running$' && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
nonce=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ca=/var/lib/zones/ca/zone-ca-cert.pem
zonectl attest web --nonce "$nonce" -o /tmp/ev.json >/tmp/attest.out 2>&1; echo "attest-rc=$?"
cat /tmp/attest.out
zonectl reference busybox -o /tmp/ref.json >/dev/null; echo "ref-rc=$?"

zonectl verify /tmp/ev.json --nonce "$nonce" --ca $ca --reference /tmp/ref.json \
  --ear /tmp/ear.jwt >/tmp/good.out; echo "good-rc=$?"
echo "good-verdict=$(head -1 /tmp/good.out | cut -d: -f1)"
echo "ear-parts=$(tr '.' '\n' </tmp/ear.jwt | grep -c .)"

zonectl verify /tmp/ev.json --nonce "ff$nonce" --ca $ca --reference /tmp/ref.json >/tmp/replay.out
echo "replay-rc=$?"
echo "replay-checks=$(grep -c '^  nonce:' /tmp/replay.out)"

zonectl reference busybox --cpus 2 -o /tmp/ref-cpus.json >/dev/null
zonectl verify /tmp/ev.json --nonce "$nonce" --ca $ca --reference /tmp/ref-cpus.json >/tmp/cpus.out
echo "cpus-rc=$?"
echo "cpus-named=$(grep -c 'reference (zone-config)' /tmp/cpus.out)"

cp "$ZONES_KERNEL" /tmp/other-kernel && echo x >>/tmp/other-kernel
zonectl reference busybox --kernel /tmp/other-kernel -o /tmp/ref-kernel.json >/dev/null
zonectl verify /tmp/ev.json --nonce "$nonce" --ca $ca --reference /tmp/ref-kernel.json >/tmp/kernel.out
echo "kernel-rc=$?"
echo "kernel-named=$(grep -c 'reference (kernel)' /tmp/kernel.out)"

zonectl reference --bare -o /tmp/ref-bare.json >/dev/null
zonectl verify /tmp/ev.json --nonce "$nonce" --ca $ca --reference /tmp/ref-bare.json >/tmp/image.out
echo "image-rc=$?"
echo "image-named=$(grep -c 'reference (image-manifest-digest)' /tmp/image.out)"

nonce2=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
zonectl attest web --nonce "$nonce2" --ca-dir /tmp/other-ca -o /tmp/ev-other.json >/dev/null 2>&1
zonectl verify /tmp/ev-other.json --nonce "$nonce2" --ca $ca --reference /tmp/ref.json >/tmp/ca.out
echo "ca-rc=$?"
echo "ca-named=$(grep -c 'zone-ca-trusted' /tmp/ca.out)"
cat /tmp/good.out /tmp/replay.out /tmp/kernel.out /tmp/image.out /tmp/ca.out

# A zone CA whose key lives in a host TPM (a second swtpm standing in for it): no key file.
mkdir -p /tmp/host-tpm
swtpm socket --tpm2 --server type=unixio,path=/tmp/host-tpm.sock \
  --ctrl type=unixio,path=/tmp/host-tpm.ctrl --tpmstate dir=/tmp/host-tpm \
  --flags not-need-init,startup-clear >/dev/null 2>&1 &
host_tpm=$!
i=0; while [ ! -S /tmp/host-tpm.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
nonce3=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
zonectl attest web --host-tpm swtpm:unix:/tmp/host-tpm.sock --ca-dir /tmp/tpm-ca \
  --nonce "$nonce3" -o /tmp/ev-tpm.json >/tmp/tpm-attest.out 2>&1; echo "tpm-attest-rc=$?"
echo "tpm-ca-files=$(ls /tmp/tpm-ca | tr '\n' ' ')"
echo "tpm-ca-says=$(grep -c 'in the host TPM' /tmp/tpm-attest.out)"
zonectl verify /tmp/ev-tpm.json --nonce "$nonce3" --ca /tmp/tpm-ca/zone-ca-cert.pem \
  --reference /tmp/ref.json >/tmp/tpm-verify.out; echo "tpm-verify-rc=$?"
zonectl verify /tmp/ev-tpm.json --nonce "$nonce3" --ca $ca --reference /tmp/ref.json >/dev/null
echo "tpm-vs-file-ca-rc=$?"
kill $host_tpm

zonectl attest nosuchzone --nonce 00 -o /tmp/x.json 2>/dev/null; echo "unknown-rc=$?"
zonectl run -d --no-tpm --name plain busybox sleep 1000 >/dev/null
zonectl attest plain --nonce 00 -o /tmp/x.json 2>/tmp/plain.err; echo "plain-rc=$?"
echo "plain-says=$(grep -c 'has no vTPM' /tmp/plain.err)"
zonectl rm -f web plain >/dev/null
sleep 1
echo "left-swtpm=$(ps -o args | grep -c '[s]wtpm')"
echo "left-vmm=$(ps -o comm | grep -c '^zone-vmm')"
echo "left-state=$(ls -A /run/zones | wc -l)"
"#,
        &[],
    );
    assert_eq!(value(&out, "attest-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "ref-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "good-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "good-verdict"), "AFFIRMING", "{out:#?}");
    assert_eq!(value(&out, "ear-parts"), "3", "the EAR is a JWT\n{out:#?}");
    assert_eq!(value(&out, "replay-rc"), "1", "{out:#?}");
    assert_ne!(value(&out, "replay-checks"), "0", "{out:#?}");
    assert_eq!(value(&out, "cpus-rc"), "1", "{out:#?}");
    assert_eq!(value(&out, "cpus-named"), "1", "{out:#?}");
    assert_eq!(value(&out, "kernel-rc"), "1", "{out:#?}");
    assert_eq!(value(&out, "kernel-named"), "1", "{out:#?}");
    assert_eq!(value(&out, "image-rc"), "1", "{out:#?}");
    assert_eq!(value(&out, "image-named"), "1", "{out:#?}");
    assert_eq!(value(&out, "ca-rc"), "1", "{out:#?}");
    assert_ne!(value(&out, "ca-named"), "0", "{out:#?}");
    assert_eq!(value(&out, "tpm-attest-rc"), "0", "{out:#?}");
    assert_eq!(
        value(&out, "tpm-ca-files").trim(),
        "zone-ca-cert.pem",
        "the host-TPM CA keeps no key file\n{out:#?}"
    );
    assert_eq!(value(&out, "tpm-ca-says"), "1", "{out:#?}");
    assert_eq!(value(&out, "tpm-verify-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "tpm-vs-file-ca-rc"), "1", "{out:#?}");
    assert_eq!(value(&out, "unknown-rc"), "125", "{out:#?}");
    assert_eq!(value(&out, "plain-rc"), "125", "{out:#?}");
    assert_eq!(value(&out, "plain-says"), "1", "{out:#?}");
    assert_eq!(value(&out, "left-swtpm"), "0", "{out:#?}");
    assert_eq!(value(&out, "left-vmm"), "0", "{out:#?}");
    assert_eq!(value(&out, "left-state"), "0", "{out:#?}");
}
