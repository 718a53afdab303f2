//! A device's worker thread and the means to stop it.

use std::io;
use std::thread::{self, JoinHandle};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A running worker thread. The closure receives a `stop` event it must poll alongside its
/// own events and return soon after it becomes readable.
#[derive(Debug)]
pub struct Worker {
    stop: EventFd,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn<F>(name: &str, body: F) -> io::Result<Self>
    where
        F: FnOnce(EventFd) + Send + 'static,
    {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let theirs = stop.try_clone()?;
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || body(theirs))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Asks the worker to stop and waits for it.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(handle) = self.handle.take() {
            // A failed write leaves the worker running; joining would then hang, so skip it.
            if self.stop.write(1).is_ok() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The event loop of a device with one queue: calls `drain` once (the driver may have queued
/// work before activation) and again after every notification, until `stop` is readable.
pub fn serve_queue(queue_evt: &EventFd, stop: &EventFd, mut drain: impl FnMut()) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
    const QUEUE: u64 = 0;
    const STOP: u64 = 1;

    let epoll = Epoll::new()?;
    for (fd, token) in [(queue_evt.as_raw_fd(), QUEUE), (stop.as_raw_fd(), STOP)] {
        epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(EventSet::IN, token),
        )?;
    }
    drain();
    let mut events = [EpollEvent::default(); 2];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if events[..n].iter().any(|e| e.data() == STOP) {
            return Ok(());
        }
        // Reading resets the counter; a failure (spurious wake-up) only means no new kick.
        let _ = queue_evt.read();
        drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

    #[test]
    fn test_worker_stop_ends_thread() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let worker = Worker::spawn("test-worker", move |stop| {
            let epoll = Epoll::new().expect("epoll");
            epoll
                .ctl(
                    ControlOperation::Add,
                    std::os::fd::AsRawFd::as_raw_fd(&stop),
                    EpollEvent::new(EventSet::IN, 0),
                )
                .expect("add");
            let mut events = [EpollEvent::default(); 1];
            epoll.wait(-1, &mut events).expect("wait");
            flag.store(true, Ordering::SeqCst);
        })
        .expect("spawn");
        worker.stop();
        assert!(done.load(Ordering::SeqCst));
    }
}
