/* The one place the kernel instruction set is chosen, at build time.
 * Each hot kernel exists as name__scalar plus name__avx2 / name__neon where written;
 * MFE_KERNEL(name) picks the variant for this build; MFE_KERNEL_NEON(name) is for kernels written only as
 * __scalar and __neon (the scalar code there is what x86 builds run). MFE_FORCE_SCALAR builds the portable
 * code only. */
#ifndef MFE_ARCH_H
#define MFE_ARCH_H

/* Scalar variants stay compiled in SIMD builds (they finish the tails) and may go unused there. */
#define MFE_SCALAR_FN static __attribute__((unused))

#if !defined(MFE_FORCE_SCALAR) && defined(__AVX2__)
#  define MFE_ISA_AVX2 1
#  include <immintrin.h>
#  if defined(__AVX512F__) && defined(__AVX512BW__)
#    define MFE_ISA_AVX512 1  /* wht widens its rows to 512 bits; other kernels stay AVX2 */
#    if defined(__AVX512VNNI__)
#      define MFE_ISA_VNNI 1  /* vpdpbusd: 64 int8 multiply-adds per instruction for 1x1 convs */
#    endif
#    define MFE_ISA_NAME "avx512"
#  else
#    define MFE_ISA_NAME "avx2"
#  endif
#  define MFE_KERNEL(name) name##__avx2
#  define MFE_KERNEL_NEON(name) name##__scalar
#elif !defined(MFE_FORCE_SCALAR) && defined(__aarch64__) && defined(__ARM_NEON)
#  define MFE_ISA_NEON 1     /* ARMv8-A Advanced SIMD: every aarch64 core (Cortex-A53/A57/A72/A78) */
#  include <arm_neon.h>
#  if defined(__ARM_FEATURE_DOTPROD)
#    define MFE_ISA_DOTPROD 1  /* ARMv8.2 sdot (-mcpu=cortex-a78ae, neoverse-n1, ...): int8 dot products */
#    define MFE_ISA_NAME "neon-dotprod"
#  else
#    define MFE_ISA_NAME "neon"
#  endif
#  define MFE_KERNEL(name) name##__neon
#  define MFE_KERNEL_NEON(name) name##__neon
#else
#  define MFE_ISA_NAME "scalar"
#  define MFE_KERNEL(name) name##__scalar
#  define MFE_KERNEL_NEON(name) name##__scalar
#endif
#if defined(MFE_ISA_AVX2) || defined(MFE_ISA_NEON)
#  define MFE_ISA_SIMD 1     /* some vector ISA was chosen above */
#endif

#endif
