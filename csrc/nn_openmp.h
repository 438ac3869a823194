/* OpenMP queries that also compile without OpenMP (then: one thread). */
#ifndef NNCORE_OPENMP_H
#define NNCORE_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
#define NN_OPENMP_ENABLED 1
static inline int nn_omp_thread_num(void) { return omp_get_thread_num(); }
static inline int nn_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int nn_omp_num_threads(void) { return omp_get_num_threads(); }
#else
#define NN_OPENMP_ENABLED 0
static inline int nn_omp_thread_num(void) { return 0; }
static inline int nn_omp_max_threads(void) { return 1; }
static inline int nn_omp_num_threads(void) { return 1; }
#endif

#endif
