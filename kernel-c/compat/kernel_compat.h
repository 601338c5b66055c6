/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * collapse-bench's kernel-compat layer: the types, functions and macros
 * that collapse_pte_mapped_thp() and its helpers in mm/khugepaged.c use,
 * with the kernel's names and argument lists, each forwarding to the
 * model primitive of the same name (bench_core::kernel::Cx). The
 * function read from the user's tree is compiled with this header forced
 * in first (gcc -include), and nothing else: no kernel header is read.
 *
 * Written for this project from the kernel's interfaces (v6.12, with
 * v6.13's pte_offset_map_rw_nolock() and pmd_same() for patches that
 * backport them, and v6.1's page-based names and locks); no kernel code
 * is copied here.
 *
 * What forwards where, in the model's terms:
 *  - Page-table memory is the model's: a pte_t * or pmd_t * points at the
 *    model's entry, so `pte++` walks the table. Entries are read and
 *    written only through ptep_get(), ptep_clear(), pmdp_get_lockless(),
 *    pmdp_collapse_flush() ... (each a scheduling point and judged by the
 *    oracles). A plain `*pte` reads the model's memory too, but is not a
 *    scheduling point: the race checker cannot interleave at it.
 *  - A spinlock_t * names one model lock (pointer equality is lock
 *    identity, so `ptl != pml` means what it means in the kernel); a
 *    struct page * names one model page frame, and `folio_page(folio, i)`
 *    is pointer arithmetic as in the kernel. Neither points at state: the
 *    lock words and page descriptors are the model's.
 *  - The VMA, file and mm the function sees are made per call from the
 *    model's; their flags are the model's.
 * The generated kc_model.h, included below, holds the model's constants.
 */
#ifndef KERNEL_COMPAT_H
#define KERNEL_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include "kc_model.h"

/* The configuration the model is: THP on shmem and files, userfaultfd,
 * mmu notifiers. */
#define CONFIG_TRANSPARENT_HUGEPAGE 1
#define CONFIG_SHMEM 1
#define CONFIG_USERFAULTFD 1
#define CONFIG_MMU_NOTIFIER 1

/* ---- compiler and debugging macros ---------------------------------- */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define __maybe_unused __attribute__((unused))
#define __always_inline inline __attribute__((always_inline))
#define barrier() __asm__ __volatile__("" ::: "memory")
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
/* A WARN reports an api-contract violation naming the line, and goes on. */
#define WARN_ON(cond) ({ bool __w = !!(cond); if (unlikely(__w)) kc_ops->warn(__FILE__, __LINE__, #cond); __w; })
#define WARN_ON_ONCE(cond) WARN_ON(cond)
#define VM_BUG_ON(cond) ((void)WARN_ON(cond))
#define VM_WARN_ON_ONCE(cond) ((void)WARN_ON(cond))
#define BUG_ON(cond) ((void)WARN_ON(cond))

#define MAX_ERRNO 4095
#define ENOENT 2
#define EAGAIN 11
#define ENOMEM 12
#define IS_ERR_VALUE(x) unlikely((unsigned long)(void *)(x) >= (unsigned long)-MAX_ERRNO)
static inline void *ERR_PTR(long error) { return (void *)error; }
static inline long PTR_ERR(const void *ptr) { return (long)ptr; }
static inline bool IS_ERR(const void *ptr) { return IS_ERR_VALUE((unsigned long)ptr); }
static inline bool IS_ERR_OR_NULL(const void *ptr) { return !ptr || IS_ERR(ptr); }

/* ---- types ----------------------------------------------------------- */

typedef struct { unsigned long pte; } pte_t;
typedef struct { unsigned long pmd; } pmd_t;
/* A model lock: its address is its identity, nothing is stored in it. */
typedef struct spinlock { unsigned char kc_lock; } spinlock_t;
/* A model page frame: its address is its pfn, nothing is stored in it. */
struct page { unsigned char kc_frame; };
struct folio { struct page page; };
/* A detached PTE table, as pmd_pgtable() gives it. */
typedef struct kc_pgtable *pgtable_t;
typedef unsigned long pgoff_t;
typedef unsigned int vm_fault_t;
typedef unsigned long vm_flags_t;

/* Sleeping locks are named by address, as spinlocks are. */
struct rw_semaphore { unsigned char kc_lock; };
struct address_space { struct rw_semaphore i_mmap_rwsem; };
struct file { struct address_space *f_mapping; };
/* A private VMA's anon_vma, once it has one: the model keeps no anon_vma
 * lock (see anon_vma_lock_write() below). */
struct anon_vma { struct anon_vma *root; struct rw_semaphore rwsem; };
struct mm_struct;
struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	struct mm_struct *vm_mm;
	vm_flags_t vm_flags;
	unsigned long vm_pgoff;
	struct file *vm_file;
	struct anon_vma *anon_vma;
	const void *kc_vma; /* the model's VMA */
};
struct mm_struct { int kc_unused; };

enum mmu_notifier_event { MMU_NOTIFY_UNMAP, MMU_NOTIFY_CLEAR };
struct mmu_notifier_range {
	unsigned long start;
	unsigned long end;
	struct mm_struct *mm;
	enum mmu_notifier_event event;
	unsigned int flags;
};

struct vm_fault {
	struct vm_area_struct *vma;
	unsigned long address;
	unsigned int flags;
	pmd_t *pmd;
};

#define VM_FAULT_FALLBACK 0x000800

/* The model's MM counters, numbered as the kernel numbers them. */
enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES };

#define SINGLE_DEPTH_NESTING 1
#define PMD_ORDER HPAGE_PMD_ORDER

/* ---- the primitives, as the model implements them --------------------- */

/*
 * One table of entry points, filled in by collapse-bench when it loads
 * the compiled function (kc_init). Every one runs the model primitive of
 * the same name on the model CPU that called the function.
 */
struct kc_ops {
	void (*step)(int step);
	void (*warn)(const char *file, int line, const char *cond);
	struct vm_area_struct *(*vma_lookup)(unsigned long addr);
	bool (*range_in_vma)(struct vm_area_struct *vma, unsigned long start, unsigned long end);
	bool (*userfaultfd_armed)(struct vm_area_struct *vma);
	bool (*userfaultfd_wp)(struct vm_area_struct *vma);
	pgoff_t (*linear_page_index)(struct vm_area_struct *vma, unsigned long addr);
	pmd_t *(*mm_find_pmd)(unsigned long addr);
	pmd_t (*pmdp_get_lockless)(pmd_t *pmd);
	bool (*pmd_none)(pmd_t pmd);
	bool (*pmd_present)(pmd_t pmd);
	bool (*pmd_trans_huge)(pmd_t pmd);
	bool (*pmd_bad)(pmd_t pmd);
	bool (*pmd_same)(pmd_t a, pmd_t b);
	pgtable_t (*pmd_pgtable)(pmd_t pmd);
	struct folio *(*filemap_lock_folio)(pgoff_t index);
	unsigned int (*folio_order)(struct folio *folio);
	void (*folio_unlock)(struct folio *folio);
	void (*folio_put)(struct folio *folio);
	void (*folio_ref_sub)(struct folio *folio, int nr);
	void (*get_page)(struct page *page);
	bool (*page_trans_huge)(struct page *page);
	bool (*page_head)(struct page *page);
	int (*mm_counter_file)(const void *folio_or_page);
	void (*add_mm_counter)(int member, long value);
	spinlock_t *(*pmd_lockptr)(pmd_t *pmd);
	spinlock_t *(*pmd_lock)(pmd_t *pmd);
	void (*spin_lock)(spinlock_t *lock);
	void (*spin_lock_nested)(spinlock_t *lock, int subclass);
	bool (*spin_trylock)(spinlock_t *lock);
	void (*spin_unlock)(spinlock_t *lock);
	pte_t *(*pte_offset_map_lock)(pmd_t *pmd, unsigned long addr, spinlock_t **ptlp);
	pte_t *(*pte_offset_map_nolock)(pmd_t *pmd, unsigned long addr, spinlock_t **ptlp);
	pte_t *(*pte_offset_map_rw_nolock)(pmd_t *pmd, unsigned long addr, pmd_t *pmdvalp, spinlock_t **ptlp);
	void (*pte_unmap)(pte_t *pte);
	pte_t (*ptep_get)(pte_t *pte);
	void (*ptep_clear)(unsigned long addr, pte_t *pte);
	bool (*pte_none)(pte_t pte);
	bool (*pte_present)(pte_t pte);
	struct page *(*vm_normal_page)(struct vm_area_struct *vma, unsigned long addr, pte_t pte);
	void (*page_remove_rmap)(struct page *page, struct vm_area_struct *vma, bool compound);
	pmd_t (*pmdp_collapse_flush)(struct vm_area_struct *vma, unsigned long addr, pmd_t *pmd);
	void (*pmd_clear)(pmd_t *pmd);
	void (*flush_tlb_mm)(void);
	void (*flush_tlb_range)(unsigned long start, unsigned long end);
	void (*tlb_remove_table_sync_one)(void);
	void (*mmu_notifier_invalidate_range_start)(unsigned long start, unsigned long end);
	void (*mmu_notifier_invalidate_range_end)(unsigned long start, unsigned long end);
	void (*mm_dec_nr_ptes)(void);
	void (*pte_free_defer)(pgtable_t table);
	void (*pte_free)(pgtable_t table);
	bool (*do_set_pmd)(pmd_t *pmd, struct page *page);
	void (*mmap_assert_write_locked)(void);
	void (*i_mmap_lock_write)(void);
	void (*i_mmap_unlock_write)(void);
	/* kc_entry.c's fault net (not for the function itself). */
	void (*set_fault_target)(void *jmp_buf);
	void *(*fault_target)(void *fault_addr);
};
extern const struct kc_ops *kc_ops;

/* Step markers the extraction puts after the kernel's step comments. */
#define KC_STEP(n) kc_ops->step(n)
#define KC_STEP_ABORT() kc_ops->step(-1)

/* VMAs, the page cache, folios and pages */
static inline struct vm_area_struct *vma_lookup(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma = kc_ops->vma_lookup(addr);

	if (vma)
		vma->vm_mm = mm;
	return vma;
}
static inline bool range_in_vma(struct vm_area_struct *vma, unsigned long start, unsigned long end) { return kc_ops->range_in_vma(vma, start, end); }
static inline bool userfaultfd_armed(struct vm_area_struct *vma) { return kc_ops->userfaultfd_armed(vma); }
static inline bool userfaultfd_wp(struct vm_area_struct *vma) { return kc_ops->userfaultfd_wp(vma); }
static inline pgoff_t linear_page_index(struct vm_area_struct *vma, unsigned long addr) { return kc_ops->linear_page_index(vma, addr); }
/* The model's VMAs are all file (or shmem) VMAs THP may map, so the
 * sysfs/prctl policy checks have nothing to reject (as in the Rust ports). */
static inline bool thp_vma_allowable_order(struct vm_area_struct *vma, vm_flags_t vm_flags, unsigned long tva_flags, int order) { (void)vma; (void)vm_flags; (void)tva_flags; (void)order; return true; }
static inline bool thp_vma_suitable_order(struct vm_area_struct *vma, unsigned long addr, int order) { (void)order; return kc_ops->range_in_vma(vma, addr & HPAGE_PMD_MASK, (addr & HPAGE_PMD_MASK) + HPAGE_PMD_SIZE); }
static inline bool vma_is_anonymous(struct vm_area_struct *vma) { return !vma->vm_file; }
/* The caller (the harness) holds mmap_lock as the policy's MMAP_LOCK says
 * (for write where the function asserts it so). */
static inline void mmap_assert_locked(struct mm_struct *mm) { (void)mm; }
static inline void mmap_assert_write_locked(struct mm_struct *mm) { (void)mm; kc_ops->mmap_assert_write_locked(); }
static inline void i_mmap_lock_write(struct address_space *mapping) { (void)mapping; kc_ops->i_mmap_lock_write(); }
static inline void i_mmap_unlock_write(struct address_space *mapping) { (void)mapping; kc_ops->i_mmap_unlock_write(); }
/* The model keeps no anon_vma lock. v6.1 takes it where step 1 found only
 * subpages of the huge page and mmap_lock for write keeps any anonymous
 * page out since, so no walker it would stop has anything to find (as the
 * Rust v6.1 port argues). */
static inline void anon_vma_lock_write(struct anon_vma *anon_vma) { (void)anon_vma; }
static inline void anon_vma_unlock_write(struct anon_vma *anon_vma) { (void)anon_vma; }
/* Not checked here: where the function relies on these locks, the model's
 * primitives check them (pmdp_collapse_flush() without pml requires
 * mmap_lock and i_mmap_rwsem held for write). */
#define lockdep_assert_held_write(lock) ((void)(lock))
/* v6.1's THP policy check: nothing to reject, as thp_vma_allowable_order(). */
static inline bool hugepage_vma_check(struct vm_area_struct *vma, unsigned long vm_flags, bool smaps, bool in_pf, bool enforce_sysfs) { (void)vma; (void)vm_flags; (void)smaps; (void)in_pf; (void)enforce_sysfs; return true; }
static inline struct folio *filemap_lock_folio(struct address_space *mapping, pgoff_t index) { (void)mapping; return kc_ops->filemap_lock_folio(index); }
static inline unsigned int folio_order(struct folio *folio) { return kc_ops->folio_order(folio); }
static inline void folio_unlock(struct folio *folio) { kc_ops->folio_unlock(folio); }
static inline void folio_put(struct folio *folio) { kc_ops->folio_put(folio); }
static inline void folio_ref_sub(struct folio *folio, int nr) { kc_ops->folio_ref_sub(folio, nr); }
#define folio_page(folio, n) (&(folio)->page + (n))
static inline struct folio *page_folio(struct page *page) { return (struct folio *)page; }
static inline void get_page(struct page *page) { kc_ops->get_page(page); }
static inline bool PageTransHuge(struct page *page) { return kc_ops->page_trans_huge(page); }
/* The model has no ZONE_DEVICE memory. */
static inline bool is_zone_device_page(const struct page *page) { (void)page; return false; }
/* Of a folio from v6.7 on, of a page before. */
#define mm_counter_file(folio_or_page) kc_ops->mm_counter_file(folio_or_page)
/* v6.1's page-based names for the same primitives. */
static inline struct page *find_lock_page(struct address_space *mapping, pgoff_t index)
{
	struct folio *folio = filemap_lock_folio(mapping, index);

	return IS_ERR(folio) ? NULL : &folio->page;
}
static inline bool PageHead(struct page *page) { return kc_ops->page_head(page); }
static inline unsigned int compound_order(struct page *page) { return kc_ops->folio_order(page_folio(page)); }
static inline void unlock_page(struct page *page) { kc_ops->folio_unlock(page_folio(page)); }
static inline void put_page(struct page *page) { kc_ops->folio_put(page_folio(page)); }
static inline void page_ref_sub(struct page *page, int nr) { kc_ops->folio_ref_sub(page_folio(page), nr); }
static inline void add_mm_counter(struct mm_struct *mm, int member, long value) { (void)mm; kc_ops->add_mm_counter(member, value); }
static inline void mm_dec_nr_ptes(struct mm_struct *mm) { (void)mm; kc_ops->mm_dec_nr_ptes(); }

/* PMDs */
static inline pmd_t *mm_find_pmd(struct mm_struct *mm, unsigned long addr) { (void)mm; return kc_ops->mm_find_pmd(addr); }
static inline pmd_t pmdp_get_lockless(pmd_t *pmd) { return kc_ops->pmdp_get_lockless(pmd); }
static inline pmd_t pmd_read_atomic(pmd_t *pmd) { return kc_ops->pmdp_get_lockless(pmd); }
/* The model reads a PMD in one load: nothing to wait for. */
static inline void pmdp_get_lockless_sync(void) { }
static inline bool pmd_none(pmd_t pmd) { return kc_ops->pmd_none(pmd); }
static inline bool pmd_present(pmd_t pmd) { return kc_ops->pmd_present(pmd); }
static inline bool pmd_trans_huge(pmd_t pmd) { return kc_ops->pmd_trans_huge(pmd); }
/* No device-mapped huge pages in the model. */
static inline bool pmd_devmap(pmd_t pmd) { (void)pmd; return false; }
static inline bool pmd_bad(pmd_t pmd) { return kc_ops->pmd_bad(pmd); }
static inline bool pmd_same(pmd_t a, pmd_t b) { return kc_ops->pmd_same(a, b); }
static inline pgtable_t pmd_pgtable(pmd_t pmd) { return kc_ops->pmd_pgtable(pmd); }
static inline pmd_t pmdp_collapse_flush(struct vm_area_struct *vma, unsigned long addr, pmd_t *pmd) { return kc_ops->pmdp_collapse_flush(vma, addr, pmd); }
static inline void pmd_clear(pmd_t *pmd) { kc_ops->pmd_clear(pmd); }
/* Folded into pte_free_defer(), as in the Rust ports: the model's free
 * checks the table is empty (table-freed-live). */
static inline void page_table_check_pte_clear_range(struct mm_struct *mm, unsigned long addr, pmd_t pmd) { (void)mm; (void)addr; (void)pmd; }
static inline vm_fault_t do_set_pmd(struct vm_fault *vmf, struct page *page) { return kc_ops->do_set_pmd(vmf->pmd, page) ? 0 : VM_FAULT_FALLBACK; }

/* Locks */
static inline spinlock_t *pmd_lockptr(struct mm_struct *mm, pmd_t *pmd) { (void)mm; return kc_ops->pmd_lockptr(pmd); }
static inline spinlock_t *pmd_lock(struct mm_struct *mm, pmd_t *pmd) { (void)mm; return kc_ops->pmd_lock(pmd); }
static inline void spin_lock(spinlock_t *lock) { kc_ops->spin_lock(lock); }
static inline void spin_lock_nested(spinlock_t *lock, int subclass) { kc_ops->spin_lock_nested(lock, subclass); }
static inline int spin_trylock(spinlock_t *lock) { return kc_ops->spin_trylock(lock); }
static inline void spin_unlock(spinlock_t *lock) { kc_ops->spin_unlock(lock); }

/* PTE tables and entries */
static inline pte_t *pte_offset_map_lock(struct mm_struct *mm, pmd_t *pmd, unsigned long addr, spinlock_t **ptlp) { (void)mm; return kc_ops->pte_offset_map_lock(pmd, addr, ptlp); }
static inline pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmd, unsigned long addr, spinlock_t **ptlp) { (void)mm; return kc_ops->pte_offset_map_nolock(pmd, addr, ptlp); }
static inline pte_t *pte_offset_map_rw_nolock(struct mm_struct *mm, pmd_t *pmd, unsigned long addr, pmd_t *pmdvalp, spinlock_t **ptlp) { (void)mm; return kc_ops->pte_offset_map_rw_nolock(pmd, addr, pmdvalp, ptlp); }
static inline void pte_unmap(pte_t *pte) { kc_ops->pte_unmap(pte); }
static inline void pte_unmap_unlock(pte_t *pte, spinlock_t *ptl) { kc_ops->spin_unlock(ptl); kc_ops->pte_unmap(pte); }
static inline pte_t ptep_get(pte_t *pte) { return kc_ops->ptep_get(pte); }
static inline void ptep_clear(struct mm_struct *mm, unsigned long addr, pte_t *pte) { (void)mm; kc_ops->ptep_clear(addr, pte); }
static inline bool pte_none(pte_t pte) { return kc_ops->pte_none(pte); }
static inline bool pte_present(pte_t pte) { return kc_ops->pte_present(pte); }
static inline struct page *vm_normal_page(struct vm_area_struct *vma, unsigned long addr, pte_t pte) { return kc_ops->vm_normal_page(vma, addr, pte); }
static inline void folio_remove_rmap_pte(struct folio *folio, struct page *page, struct vm_area_struct *vma) { (void)folio; kc_ops->page_remove_rmap(page, vma, false); }
static inline void page_remove_rmap(struct page *page, struct vm_area_struct *vma, bool compound) { kc_ops->page_remove_rmap(page, vma, compound); }

/* TLB, notifiers and freeing */
static inline void flush_tlb_mm(struct mm_struct *mm) { (void)mm; kc_ops->flush_tlb_mm(); }
static inline void flush_tlb_range(struct vm_area_struct *vma, unsigned long start, unsigned long end) { (void)vma; kc_ops->flush_tlb_range(start, end); }
static inline void tlb_remove_table_sync_one(void) { kc_ops->tlb_remove_table_sync_one(); }
static inline void kc_mmu_notifier_range_init(struct mmu_notifier_range *range, enum mmu_notifier_event event, unsigned int flags, struct mm_struct *mm, unsigned long start, unsigned long end)
{
	range->event = event;
	range->flags = flags;
	range->mm = mm;
	range->start = start;
	range->end = end;
}
/* Six arguments from v6.3 on; v6.1 passes the VMA too, before the mm. */
#define KC_NTH7(_1, _2, _3, _4, _5, _6, _7, n, ...) n
#define mmu_notifier_range_init(...) KC_NTH7(__VA_ARGS__, kc_range_init_vma, kc_mmu_notifier_range_init, , , , , )(__VA_ARGS__)
#define kc_range_init_vma(range, event, flags, vma, mm, start, end) ((void)(vma), kc_mmu_notifier_range_init(range, event, flags, mm, start, end))
static inline void mmu_notifier_invalidate_range_start(struct mmu_notifier_range *range) { kc_ops->mmu_notifier_invalidate_range_start(range->start, range->end); }
static inline void mmu_notifier_invalidate_range_end(struct mmu_notifier_range *range) { kc_ops->mmu_notifier_invalidate_range_end(range->start, range->end); }
static inline void pte_free_defer(struct mm_struct *mm, pgtable_t table) { (void)mm; kc_ops->pte_free_defer(table); }
static inline void pte_free(struct mm_struct *mm, pgtable_t table) { (void)mm; kc_ops->pte_free(table); }

/* The function under test, as the kernel declares it. */
int collapse_pte_mapped_thp(struct mm_struct *mm, unsigned long addr, bool install_pmd);

#endif /* KERNEL_COMPAT_H */
