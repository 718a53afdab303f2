//! The KVM testbed itself: a real /dev/kvm backed by emulated AMD-V, and exit statuses that
//! come back out.

use zone_tests::testbed_run;

#[test]
fn testbed_has_kvm_and_propagates_exit_status() {
    let out = testbed_run("cat /proc/cpuinfo | grep -c svm; ls -l /dev/kvm\n", &[]);
    assert_eq!(out.status, 0, "{out:#?}");
    let mut lines = out.stdout.lines();
    let svm_cpus: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected a count of svm CPUs first: {out:#?}"));
    assert_eq!(svm_cpus, 2, "both testbed CPUs should have svm: {out:#?}");
    let kvm = lines.next().unwrap_or_default();
    assert!(
        kvm.starts_with('c') && kvm.ends_with("/dev/kvm"),
        "/dev/kvm should be a character device: {out:#?}"
    );

    let out = testbed_run("exit 3\n", &[]);
    assert_eq!(out.status, 3, "{out:#?}");
}
