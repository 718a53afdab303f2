//! Tier 3: a script during which the testbed machine resets runs a second time, and the
//! reset is recorded (`tests/src/lib.rs`), so that a rare fault of the emulated testbed
//! neither fails a test silently nor goes unreported. Its own test binary: it sets the
//! environment variable that moves the record.

use zone_tests::testbed_run;

#[test]
fn test_testbed_reset_runs_script_again_and_is_recorded() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("resets.log");
    std::env::set_var("ZONES_TESTBED_RESET_LOG", &log);

    // sysrq 'b' resets the machine at once, as a triple fault would: no exit status.
    let out = testbed_run(
        "echo started; echo b > /proc/sysrq-trigger; echo not-reached",
        &[],
    );

    assert_eq!(out.status, 125, "{out:#?}");
    assert_eq!(out.stdout.matches("started").count(), 1, "{out:#?}");
    assert!(!out.stdout.contains("not-reached"), "{out:#?}");
    let record = std::fs::read_to_string(&log).expect("the reset is recorded");
    assert_eq!(
        record.matches("--- the testbed reset").count(),
        1,
        "{record}"
    );
    assert!(record.contains("echo started"), "{record}");
    assert!(record.contains("sysrq: Resetting"), "{record}");
}
