/* Compiler attributes the kernels' headers share.
 *
 * NN_SCALAR_LOOPS: the loops of a function run as written (GCC: not vectorized).
 * On a handful of elements a vectorized loop spends more on its alias checks and
 * remainder dispatch than on the arithmetic; the values are the same either way
 * (every element's operations are the same, each rounded on its own).
 */
#ifndef NNCORE_ATTRIBUTES_H
#define NNCORE_ATTRIBUTES_H

#if defined(__GNUC__) && !defined(__clang__)
#define NN_SCALAR_LOOPS __attribute__((optimize("no-tree-vectorize")))
#else
#define NN_SCALAR_LOOPS
#endif
/* The same, for a short copy of a loop inlined into the small step (train_step.h). */
#define NN_SHORT_LOOPS NN_SCALAR_LOOPS inline __attribute__((always_inline))
/* No attribute (a macro's ATTR argument). */
#define NN_NO_ATTR

#endif
