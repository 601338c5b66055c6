/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * collapse-bench's entry points into the compiled function: kc_init()
 * gives the compat layer its table of model primitives once, at load;
 * kc_collapse() is one call of collapse_pte_mapped_thp() on the model CPU
 * that makes it.
 */
#include "kernel_compat.h"

const struct kc_ops *kc_ops;

/* The mm the function is handed. Every compat function that takes an mm
 * acts on the model's one address space, so nothing is kept in it. */
static struct mm_struct kc_mm;

void kc_init(const struct kc_ops *ops)
{
	kc_ops = ops;
}

int kc_collapse(unsigned long addr, bool install_pmd)
{
	return collapse_pte_mapped_thp(&kc_mm, addr, install_pmd);
}
