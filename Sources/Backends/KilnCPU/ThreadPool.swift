import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed set of pthreads that run the chunks of one parallel loop at a time. The calling thread
/// takes part, so a pool of `threadCount` runs on `threadCount - 1` workers plus the caller. Idle workers
/// spin briefly (a model's steps follow each other within microseconds), then sleep on a condition variable.
final class ThreadPool: @unchecked Sendable {
    /// Threads that run a loop, the caller included.
    let threadCount: Int
    private let core = PoolCore()
    private var workers: [pthread_t] = []
    /// Serializes callers of `parallelFor` (one job at a time).
    private let callerLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    /// A pool of `threadCount` threads (at least 1).
    init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        pthread_mutex_init(callerLock, nil)
        for _ in 1..<self.threadCount {
            let box = Unmanaged.passRetained(core)
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                let core = Unmanaged<PoolCore>.fromOpaque(raw!).takeRetainedValue()
                core.workerLoop()
                return nil
            }, box.toOpaque())
            if created == 0 { workers.append(thread) } else { box.release() }
        }
    }

    deinit {
        core.stop()
        for thread in workers { pthread_join(thread, nil) }
        pthread_mutex_destroy(callerLock)
        callerLock.deallocate()
    }

    /// Runs `body(i)` for every i in 0..<count, spread over the pool's threads; returns when all are done.
    func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || workers.isEmpty {
            for i in 0..<count { body(i) }
            return
        }
        pthread_mutex_lock(callerLock)
        defer { pthread_mutex_unlock(callerLock) }
        withoutActuallyEscaping(body) { core.run(count, $0) }
    }
}

/// The state a pool shares with its workers.
private final class PoolCore: @unchecked Sendable {
    /// High bits: the job's epoch; low 32 bits: the next chunk index to claim. Claims are tied to the
    /// epoch, so a worker can never claim a chunk of a job that has been replaced.
    private let state = Atomic<Int>(0)
    /// Chunks of the current job that have finished.
    private let finished = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Chunks in the current job. Atomic because a worker still finishing the previous job may read it
    /// while the next job is posted (TSan reported the plain variable); that worker's claim then fails,
    /// since the epoch in `state` has moved on.
    private let jobCount = Atomic<Int>(0)
    private var job: ((Int) -> Void)?
    private var epoch = 0
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(wake)
        mutex.deallocate()
        wake.deallocate()
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
    }

    /// Posts a job of `count` chunks, takes part in it, and returns when every chunk has finished.
    func run(_ count: Int, _ body: @escaping (Int) -> Void) {
        job = body
        jobCount.store(count, ordering: .relaxed)
        finished.store(0, ordering: .relaxed)
        epoch = (epoch + 1) & 0x7FFF_FFFF
        let myEpoch = epoch
        state.store(myEpoch << 32, ordering: .releasing)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
        runChunks(epoch: myEpoch)
        var spins = 0
        while finished.load(ordering: .acquiring) < count {
            spins += 1
            if spins > 1000 { sched_yield() }
        }
        job = nil
    }

    /// Claims and runs chunks of the job of `epoch` until none is left.
    private func runChunks(epoch: Int) {
        while true {
            let current = state.load(ordering: .acquiring)
            guard current >> 32 == epoch else { return }
            let index = current & 0xFFFF_FFFF
            guard index < jobCount.load(ordering: .relaxed) else { return }
            guard state.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing).exchanged else {
                continue
            }
            job!(index)
            finished.add(1, ordering: .releasing)
        }
    }

    func workerLoop() {
        var seenEpoch = 0
        while true {
            // Spin a while for the next job, then sleep until one is posted.
            var spins = 0
            var current = state.load(ordering: .acquiring) >> 32
            while current == seenEpoch && !stopping.load(ordering: .relaxed) {
                spins += 1
                if spins < 200_000 {
                    current = state.load(ordering: .acquiring) >> 32
                    continue
                }
                pthread_mutex_lock(mutex)
                current = state.load(ordering: .acquiring) >> 32
                while current == seenEpoch && !stopping.load(ordering: .relaxed) {
                    pthread_cond_wait(wake, mutex)
                    current = state.load(ordering: .acquiring) >> 32
                }
                pthread_mutex_unlock(mutex)
            }
            if stopping.load(ordering: .acquiring) { return }
            seenEpoch = current
            runChunks(epoch: current)
        }
    }
}
