/* Threads: the OpenMP shim (the kernels call these whether or not OpenMP is
 * compiled in) and the team of the deterministic SGD pass. */
#ifndef SPARSEBED_OPENMP_H
#define SPARSEBED_OPENMP_H
#ifdef _OPENMP
#include <omp.h>
#define SPARSEBED_OPENMP 1
#else
#define SPARSEBED_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

/* The team of the deterministic SGD pass: a barrier, met thousands of times
 * a second, and a way for all threads but the first to sit out batches.
 *
 * A thread waiting at the barrier spins for up to SB_BARRIER_SPIN_NS (the
 * others are usually microseconds behind), then sleeps on a futex until the
 * last one arrives; sb_barrier_wait returns 1 when someone had to sleep,
 * that is when a thread came late, most often because another process had
 * taken its core. The first thread then sends the others to sit out a run
 * of batches (sb_sit_out) and works alone, and calls them back later
 * (sb_recall). Which thread computes what never changes a result, so this
 * only moves work. Each thread keeps its own `sense`, 0 at the start.
 *
 * Off Linux (or without GCC atomics) the barrier is OpenMP's own, nobody is
 * ever late, and the team never shrinks. */
typedef struct {
    int arrived, sense, sleepers; /* the barrier */
    int next_active;              /* threads in the next batch: all, or the first */
    int recalled;                 /* bumped to call the others back */
    int recall_sense;             /* the barrier's sense at the call */
    long long recall_batch;       /* the batch they take up */
} sb_team;

#if (defined(__GNUC__) || defined(__clang__)) && defined(__linux__) && defined(_OPENMP)
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#define SB_CPU_RELAX() __builtin_ia32_pause()
#else
#define SB_CPU_RELAX() ((void)0)
#endif
#ifndef SB_BARRIER_SPIN_NS
#define SB_BARRIER_SPIN_NS 50000
#endif

static inline long long sb_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void sb_futex_wait(int *word, int value) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}

static inline void sb_futex_wake(int *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Spin until *word != value or SB_BARRIER_SPIN_NS pass; 1 if it changed. */
static inline int sb_spin_while(const int *word, int value) {
    long spins;
    long long deadline = 0;
    for (spins = 1;; spins++) {
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != value) return 1;
        SB_CPU_RELAX();
        if (spins % 64 == 0) {
            if (deadline == 0) deadline = sb_now_ns() + SB_BARRIER_SPIN_NS;
            else if (sb_now_ns() > deadline) return 0;
        }
    }
}

static inline int sb_barrier_wait(sb_team *b, int n, int *sense) {
    const int s = !*sense;
    *sense = s;
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, s, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) == 0) return 0;
        sb_futex_wake(&b->sense);
        return 1;
    }
    if (sb_spin_while(&b->sense, !s)) return 0;
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->sense, __ATOMIC_SEQ_CST) != s) sb_futex_wait(&b->sense, !s);
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    return 1;
}

/* Sleep until the first thread calls the team back; *seen counts the calls
 * this thread has answered. */
static inline void sb_sit_out(sb_team *b, int *seen) {
    while (__atomic_load_n(&b->recalled, __ATOMIC_SEQ_CST) == *seen)
        sb_futex_wait(&b->recalled, *seen);
    *seen += 1;
}

/* The first thread calls the others back to take up `batch` (it calls with
 * the barrier at rest). It never writes next_active here: a thread slow to
 * read it after the barrier must still find the value that sent it out. */
static inline void sb_recall(sb_team *b, long long batch) {
    b->recall_batch = batch;
    b->recall_sense = b->sense;
    __atomic_add_fetch(&b->recalled, 1, __ATOMIC_SEQ_CST);
    sb_futex_wake(&b->recalled);
}
#else
static inline int sb_barrier_wait(sb_team *b, int n, int *sense) {
    (void)b; (void)n; (void)sense;
#ifdef _OPENMP
#pragma omp barrier
#endif
    return 0;
}

static inline void sb_sit_out(sb_team *b, int *seen) { (void)b; (void)seen; }

static inline void sb_recall(sb_team *b, long long batch) { (void)b; (void)batch; }
#endif
#endif
