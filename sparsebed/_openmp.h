/* Threads: the OpenMP shim (the kernels call these whether or not OpenMP is
 * compiled in) and the barrier of the deterministic SGD pass. */
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

/* A barrier for the n threads of one parallel region, met thousands of times
 * a second by the deterministic SGD pass. A waiting thread spins for up to
 * SB_BARRIER_SPIN_NS (the others are usually microseconds behind), then
 * sleeps on a futex until the last thread arrives: a thread that another
 * process has preempted then gets a core back instead of waiting behind its
 * own team's spinning. Each thread keeps its own `sense`, 0 at the start.
 * Off Linux (or without GCC atomics) it is OpenMP's own barrier. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__linux__) && defined(_OPENMP)
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#define SB_CPU_RELAX() __builtin_ia32_pause()
#else
#define SB_CPU_RELAX() ((void)0)
#endif
#include <time.h>
#ifndef SB_BARRIER_SPIN_NS
#define SB_BARRIER_SPIN_NS 50000
#endif
static inline long long sb_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
typedef struct { int arrived; int sense; int sleepers; } sb_barrier;

static inline void sb_barrier_wait(sb_barrier *b, int n, int *sense) {
    const int s = !*sense;
    long spins;
    long long deadline = 0;
    *sense = s;
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, s, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) > 0)
            syscall(SYS_futex, &b->sense, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        return;
    }
    for (spins = 1;; spins++) {
        if (__atomic_load_n(&b->sense, __ATOMIC_ACQUIRE) == s) return;
        SB_CPU_RELAX();
        if (spins % 64 == 0) {
            if (deadline == 0) deadline = sb_now_ns() + SB_BARRIER_SPIN_NS;
            else if (sb_now_ns() > deadline) break;
        }
    }
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->sense, __ATOMIC_SEQ_CST) != s)
        syscall(SYS_futex, &b->sense, FUTEX_WAIT_PRIVATE, !s, NULL, NULL, 0);
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
}
#else
typedef struct { int arrived; int sense; int sleepers; } sb_barrier;

static inline void sb_barrier_wait(sb_barrier *b, int n, int *sense) {
    (void)b; (void)n; (void)sense;
#ifdef _OPENMP
#pragma omp barrier
#endif
}
#endif
#endif
