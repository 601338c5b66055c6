/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * collapse-bench's entry points into the compiled function: kc_init()
 * gives the compat layer its table of model primitives once, at load;
 * kc_collapse() is one call of collapse_pte_mapped_thp() on the model CPU
 * that makes it.
 *
 * A fault in the function's own code (a NULL or wild pointer dereference,
 * which the kernel would oops on) must not take the whole tool with it:
 * kc_collapse() returns KC_FAULT instead, with the address, and the model
 * reports it as the oops it is. Only a fault in this object's C, outside
 * every call into the model, is caught; any other goes to the handler
 * that was there before (the Rust runtime's stack-overflow guard, or the
 * default action).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include "kernel_compat.h"

const struct kc_ops *kc_ops;

/* The mm the function is handed. Every compat function that takes an mm
 * acts on the model's one address space, so nothing is kept in it. */
static struct mm_struct kc_mm;

/* Returned by kc_collapse() when the function faulted. */
#define KC_FAULT (-1000)

static struct sigaction kc_previous_segv, kc_previous_bus;

static void kc_on_fault(int sig, siginfo_t *info, void *context)
{
	struct sigaction *previous = sig == SIGBUS ? &kc_previous_bus : &kc_previous_segv;
	/* The model knows which call runs on this thread (a coroutine's, on
	 * the controlled engine) and whether the fault is in its C or in the
	 * model's own code below a callback. */
	sigjmp_buf *back = kc_ops->fault_target(info->si_addr);

	if (back)
		siglongjmp(*back, sig);
	if (previous->sa_flags & SA_SIGINFO) {
		previous->sa_sigaction(sig, info, context);
	} else if (previous->sa_handler != SIG_DFL && previous->sa_handler != SIG_IGN) {
		previous->sa_handler(sig);
	} else {
		/* The default action, when the faulting instruction runs again. */
		signal(sig, SIG_DFL);
	}
}

void kc_init(const struct kc_ops *ops)
{
	struct sigaction action;

	kc_ops = ops;
	memset(&action, 0, sizeof(action));
	action.sa_sigaction = kc_on_fault;
	action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&action.sa_mask);
	sigaction(SIGSEGV, &action, &kc_previous_segv);
	sigaction(SIGBUS, &action, &kc_previous_bus);
}

int kc_collapse(unsigned long addr, bool install_pmd)
{
	sigjmp_buf here;

	if (sigsetjmp(here, 0))
		return KC_FAULT;
	kc_ops->set_fault_target(&here);
	return collapse_pte_mapped_thp(&kc_mm, addr, install_pmd);
}
