/*
 * Compiled kernels of LinearTextPredictor (loopline/serve/inference.py).
 *
 * The numpy path of that predictor spends most of a small batch on numpy's per-call cost
 * (about a hundred calls for a batch of 16 tweets) and on searchsorted over vocabularies of
 * ~10^5 keys. These functions do the same steps in one call each, with the same arithmetic:
 * every floating-point operation below is the one numpy performs there, in the same dtype
 * and order (built with -ffp-contract=off, so no multiply-add is fused), which keeps the
 * probabilities bit-for-bit those of scikit-learn. tests/serve/test_lean_kernels.py checks
 * each kernel against the numpy path.
 *
 * Only the CPython API and the buffer protocol are used (no numpy headers): arrays come in
 * as buffers, variable-length results go out as bytearrays that Python views with
 * np.frombuffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

/* -- buffers ---------------------------------------------------------------------------- */

/* A C-contiguous buffer of items of `itemsize` bytes (`writable`: one to write into). */
static int
get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        return -1;
    }
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name,
                     itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static Py_ssize_t
items(const Py_buffer *view)
{
    return view->len / view->itemsize;
}

/* -- KeyTable: int64 key -> int64 column, open addressing ------------------------------- */

typedef struct {
    int64_t key; /* -1: empty (keys are >= 0) */
    int64_t value;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    uint64_t mask;
    int shift;
    Py_ssize_t size;
} KeyTable;

static inline uint64_t
slot_of(const KeyTable *table, int64_t key)
{
    /* Fibonacci hashing: the top bits of key * 2^64/phi. */
    return ((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> table->shift;
}

static inline int64_t
table_find(const KeyTable *table, int64_t key)
{
    if (key < 0) { /* never stored, and -1 marks an empty slot */
        return -1;
    }
    uint64_t at = slot_of(table, key);
    for (;;) {
        const Slot *slot = &table->slots[at];
        if (slot->key == key) {
            return slot->value;
        }
        if (slot->key < 0) {
            return -1;
        }
        at = (at + 1) & table->mask;
    }
}

static int
KeyTable_init(KeyTable *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"keys", "values", NULL};
    PyObject *keys_obj, *values_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:KeyTable", keywords, &keys_obj,
                                     &values_obj)) {
        return -1;
    }
    Py_buffer keys, values;
    if (get_buffer(keys_obj, &keys, 8, 0, "keys") < 0) {
        return -1;
    }
    if (get_buffer(values_obj, &values, 8, 0, "values") < 0) {
        PyBuffer_Release(&keys);
        return -1;
    }
    int status = -1;
    Py_ssize_t n = items(&keys);
    if (items(&values) != n) {
        PyErr_SetString(PyExc_ValueError, "keys and values differ in length");
        goto done;
    }
    int bits = 4;
    while (((Py_ssize_t)1 << bits) < 2 * n + 2) {
        bits++;
    }
    Slot *slots = PyMem_Malloc(sizeof(Slot) << bits);
    if (slots == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < ((Py_ssize_t)1 << bits); i++) {
        slots[i].key = -1;
    }
    PyMem_Free(self->slots);
    self->slots = slots;
    self->mask = ((uint64_t)1 << bits) - 1;
    self->shift = 64 - bits;
    self->size = n;
    const int64_t *key = keys.buf, *value = values.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (key[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "keys must be >= 0");
            goto done;
        }
        uint64_t at = slot_of(self, key[i]);
        while (slots[at].key >= 0 && slots[at].key != key[i]) {
            at = (at + 1) & self->mask;
        }
        if (slots[at].key < 0) { /* the first of repeated keys wins, as searchsorted's */
            slots[at].key = key[i];
            slots[at].value = value[i];
        }
    }
    status = 0;
done:
    PyBuffer_Release(&keys);
    PyBuffer_Release(&values);
    return status;
}

static void
KeyTable_dealloc(KeyTable *self)
{
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
KeyTable_find(KeyTable *self, PyObject *keys_obj)
{
    Py_buffer keys;
    if (self->slots == NULL) {
        PyErr_SetString(PyExc_ValueError, "KeyTable is not initialised");
        return NULL;
    }
    if (get_buffer(keys_obj, &keys, 8, 0, "keys") < 0) {
        return NULL;
    }
    Py_ssize_t n = items(&keys);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * 8);
    if (out != NULL) {
        int64_t *found = (int64_t *)PyByteArray_AS_STRING(out);
        const int64_t *key = keys.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            found[i] = table_find(self, key[i]);
        }
    }
    PyBuffer_Release(&keys);
    return out;
}

static Py_ssize_t
KeyTable_len(KeyTable *self)
{
    return self->size;
}

static PyMethodDef KeyTable_methods[] = {
    {"find", (PyCFunction)KeyTable_find, METH_O,
     "find(keys) -> bytearray: each int64 key's value as int64, -1 where absent."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods KeyTable_as_sequence = {
    .sq_length = (lenfunc)KeyTable_len,
};

static PyTypeObject KeyTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loopline.serve._lean.KeyTable",
    .tp_doc = "KeyTable(keys, values): int64 keys (>= 0) to int64 values, a hash table.",
    .tp_basicsize = sizeof(KeyTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)KeyTable_init,
    .tp_dealloc = (destructor)KeyTable_dealloc,
    .tp_methods = KeyTable_methods,
    .tp_as_sequence = &KeyTable_as_sequence,
};

static KeyTable *
as_table(PyObject *obj, const char *name)
{
    if (!PyObject_TypeCheck(obj, &KeyTableType) || ((KeyTable *)obj)->slots == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: expected an initialised KeyTable", name);
        return NULL;
    }
    return (KeyTable *)obj;
}

/* -- growing int64 arrays, handed out as bytearrays --------------------------------------- */

static PyObject *
new_int64s(Py_ssize_t n, int64_t **data)
{
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * 8);
    if (out != NULL) {
        *data = (int64_t *)PyByteArray_AS_STRING(out);
    }
    return out;
}

/* Shrink a bytearray of int64s to its first n; returns 0 or -1. */
static int
truncate_int64s(PyObject *array, Py_ssize_t n)
{
    return PyByteArray_Resize(array, n * 8);
}

/* The Py_ssize_t of each item of a list of ints (NULL and an exception on failure). */
static Py_ssize_t *
ssize_list(PyObject *list, Py_ssize_t *n, const char *name)
{
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a list of ints", name);
        return NULL;
    }
    *n = PyList_GET_SIZE(list);
    Py_ssize_t *out = PyMem_Malloc(sizeof(Py_ssize_t) * (*n > 0 ? *n : 1));
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        out[i] = PyLong_AsSsize_t(PyList_GET_ITEM(list, i));
        if (out[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(out);
            return NULL;
        }
    }
    return out;
}

/* -- word n-grams ------------------------------------------------------------------------ */

PyDoc_STRVAR(word_entries_doc,
"word_entries(ids, counts, base, min_n, max_n, unigrams, tables) -> (rows, columns)\n\n"
"The in-vocabulary word n-grams of a batch: ``ids`` the token ids of all texts in order\n"
"(a list of ints below ``base``), ``counts`` each text's number of tokens, ``unigrams``\n"
"the column of each id (int64 buffer, -1: none; unused when min_n > 1) and ``tables[n]``\n"
"the KeyTable of the n-grams' keys ``t1 * base**(n-1) + ... + tn`` for n >= 2. Returns\n"
"int64 bytearrays of rows and columns, by position then n.");

static PyObject *
word_entries(PyObject *module, PyObject *args)
{
    PyObject *ids_obj, *counts_obj, *unigrams_obj, *tables_obj;
    Py_ssize_t base, min_n, max_n;
    if (!PyArg_ParseTuple(args, "OOnnnOO:word_entries", &ids_obj, &counts_obj, &base, &min_n,
                          &max_n, &unigrams_obj, &tables_obj)) {
        return NULL;
    }
    if (min_n < 1 || max_n < min_n || !PyTuple_Check(tables_obj) ||
        PyTuple_GET_SIZE(tables_obj) != max_n + 1) {
        PyErr_SetString(PyExc_ValueError,
                        "word_entries: need 1 <= min_n <= max_n and max_n + 1 tables");
        return NULL;
    }
    const KeyTable *tables[64];
    if (max_n >= 64) {
        PyErr_SetString(PyExc_ValueError, "word_entries: max_n must be below 64");
        return NULL;
    }
    for (Py_ssize_t n = 2; n <= max_n; n++) {
        if (n >= min_n) {
            tables[n] = as_table(PyTuple_GET_ITEM(tables_obj, n), "tables");
            if (tables[n] == NULL) {
                return NULL;
            }
        }
    }
    Py_buffer unigrams = {0};
    if (min_n == 1 && get_buffer(unigrams_obj, &unigrams, 8, 0, "unigrams") < 0) {
        return NULL;
    }
    PyObject *result = NULL, *rows_out = NULL, *columns_out = NULL;
    Py_ssize_t total, n_texts;
    Py_ssize_t *ids = ssize_list(ids_obj, &total, "ids");
    Py_ssize_t *counts = ids == NULL ? NULL : ssize_list(counts_obj, &n_texts, "counts");
    if (counts == NULL) {
        goto done;
    }
    Py_ssize_t n_unigrams = min_n == 1 ? items(&unigrams) : 0;
    Py_ssize_t seen = 0;
    for (Py_ssize_t r = 0; r < n_texts; r++) {
        if (counts[r] < 0 || counts[r] > total - seen) {
            PyErr_SetString(PyExc_ValueError, "word_entries: counts do not add up to ids");
            goto done;
        }
        seen += counts[r];
    }
    for (Py_ssize_t i = 0; i < total; i++) {
        if (ids[i] < 0 || ids[i] >= base || (min_n == 1 && ids[i] >= n_unigrams)) {
            PyErr_SetString(PyExc_ValueError, "word_entries: a token id is out of range");
            goto done;
        }
    }
    int64_t *rows, *columns;
    Py_ssize_t capacity = total * (max_n - min_n + 1), m = 0;
    rows_out = new_int64s(capacity, &rows);
    columns_out = rows_out == NULL ? NULL : new_int64s(capacity, &columns);
    if (columns_out == NULL) {
        goto done;
    }
    const int64_t *unigram = unigrams.buf;
    const Py_ssize_t *id = ids;
    for (Py_ssize_t r = 0; r < n_texts; r++) {
        Py_ssize_t count = counts[r];
        for (Py_ssize_t i = 0; i < count; i++) {
            /* unsigned: a caller's base**max_n past 2**63 wraps instead of being undefined */
            uint64_t key = 0;
            for (Py_ssize_t n = 1; n <= max_n && i + n <= count; n++) {
                key = key * (uint64_t)base + (uint64_t)id[i + n - 1];
                if (n < min_n) {
                    continue;
                }
                int64_t column = n == 1 ? unigram[key] : table_find(tables[n], (int64_t)key);
                if (column >= 0) {
                    rows[m] = r;
                    columns[m] = column;
                    m++;
                }
            }
        }
        id += count;
    }
    if (truncate_int64s(rows_out, m) < 0 || truncate_int64s(columns_out, m) < 0) {
        goto done;
    }
    result = PyTuple_Pack(2, rows_out, columns_out);
done:
    PyMem_Free(ids);
    PyMem_Free(counts);
    Py_XDECREF(rows_out);
    Py_XDECREF(columns_out);
    if (min_n == 1) {
        PyBuffer_Release(&unigrams);
    }
    return result;
}

/* -- char_wb n-grams --------------------------------------------------------------------- */

PyDoc_STRVAR(char_wb_columns_doc,
"char_wb_columns(words, codes, bits, min_n, max_n, table) -> list[bytes]\n\n"
"For each word, the columns (C ints, packed) of the in-vocabulary n-grams of the word\n"
"padded with a space on each side, n from min_n to max_n, by position then n (sklearn's\n"
"_char_wb_ngrams yields the same n-grams; the padded words must be at least min_n long).\n"
"``codes`` maps a code point to its character code (int64 buffer; its last entry for any\n"
"larger code point), an n-gram's key is its codes ``bits`` apart, and ``table`` holds the\n"
"vocabulary's keys.");

static PyObject *
char_wb_columns(PyObject *module, PyObject *args)
{
    PyObject *words, *codes_obj, *table_obj;
    Py_ssize_t bits, min_n, max_n;
    if (!PyArg_ParseTuple(args, "O!OnnnO:char_wb_columns", &PyList_Type, &words, &codes_obj,
                          &bits, &min_n, &max_n, &table_obj)) {
        return NULL;
    }
    const KeyTable *table = as_table(table_obj, "table");
    if (table == NULL) {
        return NULL;
    }
    if (min_n < 1 || max_n < min_n || bits < 1 || bits * max_n > 62) {
        PyErr_SetString(PyExc_ValueError, "char_wb_columns: bad n-gram range or code width");
        return NULL;
    }
    Py_buffer codes;
    if (get_buffer(codes_obj, &codes, 8, 0, "codes") < 0) {
        return NULL;
    }
    const int64_t *code = codes.buf;
    Py_ssize_t n_codes = items(&codes);
    Py_ssize_t n_words = PyList_GET_SIZE(words);
    PyObject *out = NULL;
    int64_t *padded = NULL;
    int *found = NULL;
    Py_ssize_t room = 0;
    if (n_codes < 1) {
        PyErr_SetString(PyExc_ValueError, "char_wb_columns: no codes");
        goto fail;
    }
    out = PyList_New(n_words);
    if (out == NULL) {
        goto fail;
    }
#define CODE_OF(point) code[(Py_ssize_t)(point) < n_codes - 1 ? (Py_ssize_t)(point) : n_codes - 1]
    for (Py_ssize_t w = 0; w < n_words; w++) {
        PyObject *word = PyList_GET_ITEM(words, w);
        if (!PyUnicode_Check(word)) {
            PyErr_SetString(PyExc_TypeError, "char_wb_columns: words must be str");
            goto fail;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(word) + 2;
        if (length > room) {
            room = 2 * length;
            PyMem_Free(padded);
            PyMem_Free(found);
            padded = PyMem_Malloc(sizeof(int64_t) * room);
            found = PyMem_Malloc(sizeof(int) * room * (max_n - min_n + 1));
            if (padded == NULL || found == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
        }
        int kind = PyUnicode_KIND(word);
        const void *data = PyUnicode_DATA(word);
        padded[0] = padded[length - 1] = CODE_OF(' ');
        for (Py_ssize_t i = 0; i + 2 < length; i++) {
            padded[i + 1] = CODE_OF(PyUnicode_READ(kind, data, i));
        }
        Py_ssize_t m = 0;
        for (Py_ssize_t start = 0; start < length; start++) {
            uint64_t key = 0;
            for (Py_ssize_t n = 1; n <= max_n && start + n <= length; n++) {
                key = key << bits | (uint64_t)padded[start + n - 1];
                if (n >= min_n) {
                    int64_t column = table_find(table, (int64_t)key);
                    if (column >= 0) {
                        found[m++] = (int)column;
                    }
                }
            }
        }
        PyObject *packed = PyBytes_FromStringAndSize((const char *)found, m * sizeof(int));
        if (packed == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out, w, packed);
    }
#undef CODE_OF
    PyMem_Free(padded);
    PyMem_Free(found);
    PyBuffer_Release(&codes);
    return out;
fail:
    PyMem_Free(padded);
    PyMem_Free(found);
    Py_XDECREF(out);
    PyBuffer_Release(&codes);
    return NULL;
}

PyDoc_STRVAR(packed_entries_doc,
"packed_entries(found, per_text) -> (rows, columns)\n\n"
"Rows and columns (int64 bytearrays) of a batch from each word's packed C-int columns\n"
"(``found``, bytes, all texts' words in order) and each text's number of words.");

static PyObject *
packed_entries(PyObject *module, PyObject *args)
{
    PyObject *found, *per_text_obj;
    if (!PyArg_ParseTuple(args, "O!O:packed_entries", &PyList_Type, &found, &per_text_obj)) {
        return NULL;
    }
    Py_ssize_t n_texts, n_words = PyList_GET_SIZE(found), total = 0, seen = 0;
    Py_ssize_t *per_text = ssize_list(per_text_obj, &n_texts, "per_text");
    if (per_text == NULL) {
        return NULL;
    }
    PyObject *result = NULL, *rows_out = NULL, *columns_out = NULL;
    for (Py_ssize_t w = 0; w < n_words; w++) {
        PyObject *packed = PyList_GET_ITEM(found, w);
        if (!PyBytes_Check(packed) || PyBytes_GET_SIZE(packed) % sizeof(int)) {
            PyErr_SetString(PyExc_TypeError, "packed_entries: expected bytes of C ints");
            goto done;
        }
        total += PyBytes_GET_SIZE(packed) / sizeof(int);
    }
    for (Py_ssize_t r = 0; r < n_texts && seen <= n_words; r++) {
        seen += per_text[r] < 0 ? n_words + 1 : per_text[r];
    }
    if (seen != n_words) {
        PyErr_SetString(PyExc_ValueError, "packed_entries: per_text does not add up to found");
        goto done;
    }
    int64_t *rows, *columns;
    rows_out = new_int64s(total, &rows);
    columns_out = rows_out == NULL ? NULL : new_int64s(total, &columns);
    if (columns_out == NULL) {
        goto done;
    }
    Py_ssize_t w = 0, m = 0;
    for (Py_ssize_t r = 0; r < n_texts; r++) {
        for (Py_ssize_t j = 0; j < per_text[r]; j++, w++) {
            PyObject *packed = PyList_GET_ITEM(found, w);
            const int *column = (const int *)PyBytes_AS_STRING(packed);
            Py_ssize_t size = PyBytes_GET_SIZE(packed) / sizeof(int);
            for (Py_ssize_t i = 0; i < size; i++, m++) {
                rows[m] = r;
                columns[m] = column[i];
            }
        }
    }
    result = PyTuple_Pack(2, rows_out, columns_out);
done:
    PyMem_Free(per_text);
    Py_XDECREF(rows_out);
    Py_XDECREF(columns_out);
    return result;
}

/* -- counting, weighting and scoring ----------------------------------------------------- */

/* Sort int64 keys in [0, 2^bits) with LSD radix passes of 11 bits: no data-dependent
   branches, so 4x faster than a quicksort for the ~3,500 keys of 16 tweets, whose
   comparisons mispredict half of the time. Returns whichever of keys/scratch holds them. */
static int64_t *
radix_sort(int64_t *keys, int64_t *scratch, Py_ssize_t m, int bits)
{
    Py_ssize_t count[2048];
    for (int shift = 0; shift < bits; shift += 11) {
        memset(count, 0, sizeof count);
        for (Py_ssize_t i = 0; i < m; i++) {
            count[(keys[i] >> shift) & 2047]++;
        }
        Py_ssize_t at = 0;
        for (int digit = 0; digit < 2048; digit++) {
            Py_ssize_t here = count[digit];
            count[digit] = at;
            at += here;
        }
        for (Py_ssize_t i = 0; i < m; i++) {
            scratch[count[(keys[i] >> shift) & 2047]++] = keys[i];
        }
        int64_t *swap = keys;
        keys = scratch;
        scratch = swap;
    }
    return keys;
}

typedef struct {
    Py_ssize_t n, k;     /* rows, classes (scores is n x k) */
    Py_ssize_t n_blocks; /* the group's blocks: columns starts[b] .. starts[b + 1] */
    const int64_t *starts;
    int column_bits;     /* a key is row << column_bits | (column - starts[0]) */
    int binary, norm;    /* norm: 0 none, 1 l1, 2 l2 */
} Group;

/*
 * One group's sorted keys (row, then column) counted and weighted as _TfidfGroup.entries
 * does (count, binary, sublinear tf from a table of log(count) + 1 made by numpy, idf, the
 * row norm of each block summed in double in column order, the division in double), then
 * added to the scores as np.add.at (float32) or np.bincount (float64) add them: row by row,
 * in column order, value * coef in T, the sum in T. ``weights`` holds, for each column of
 * the group, its idf (1 without: x * 1 is x) then its k coefficients, side by side so that
 * one cache line serves both.
 */
#define ACCUMULATE(NAME, T)                                                                     \
    static void NAME(T *scores, const Group *g, const int64_t *key, Py_ssize_t m,              \
                     const T *weights, const T *log_table, int64_t *distinct, T *values)        \
    {                                                                                           \
        const int64_t mask = ((int64_t)1 << g->column_bits) - 1, first = g->starts[0];        \
        const Py_ssize_t k = g->k, stride = 1 + k;                                              \
        Py_ssize_t i = 0;                                                                       \
        while (i < m) {                                                                         \
            const int64_t row = key[i] >> g->column_bits;                                       \
            Py_ssize_t d = 0;                                                                   \
            for (; i < m && key[i] >> g->column_bits == row; i++) {                             \
                Py_ssize_t count = 1;                                                           \
                while (i + 1 < m && key[i + 1] == key[i]) {                                     \
                    i++;                                                                        \
                    count++;                                                                    \
                }                                                                               \
                if (g->binary) {                                                                \
                    count = 1;                                                                  \
                }                                                                               \
                const int64_t column = key[i] & mask;                                           \
                T value = log_table != NULL ? log_table[count - 1] : (T)count;                  \
                distinct[d] = column;                                                           \
                values[d++] = value * weights[column * stride];                                 \
            }                                                                                   \
            if (g->norm) {                                                                      \
                Py_ssize_t j = 0;                                                               \
                for (Py_ssize_t b = 0; b < g->n_blocks && j < d; b++) {                         \
                    const int64_t end = g->starts[b + 1] - first;                               \
                    Py_ssize_t from = j;                                                        \
                    double sum = 0.0;                                                           \
                    for (; j < d && distinct[j] < end; j++) {                                   \
                        T term = g->norm == 1 ? (T)fabs((double)values[j]) : values[j] * values[j]; \
                        sum += (double)term;                                                    \
                    }                                                                           \
                    if (g->norm == 2) {                                                         \
                        sum = sqrt(sum);                                                        \
                    }                                                                           \
                    if (sum == 0.0) {                                                           \
                        sum = 1.0;                                                              \
                    }                                                                           \
                    for (Py_ssize_t e = from; e < j; e++) {                                     \
                        values[e] = (T)((double)values[e] / sum);                               \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
            T *score = scores + row * k;                                                        \
            for (Py_ssize_t e = 0; e < d; e++) {                                                \
                const T *coef = weights + distinct[e] * stride + 1;                             \
                for (Py_ssize_t c = 0; c < k; c++) {                                            \
                    score[c] += values[e] * coef[c];                                            \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

ACCUMULATE(accumulate_float, float)
ACCUMULATE(accumulate_double, double)

PyDoc_STRVAR(accumulate_group_doc,
"accumulate_group(scores, k, blocks, starts, weights, log_table, binary, norm)\n\n"
"Add one TF-IDF group's contribution to ``scores`` (a writable float32 or float64 buffer of\n"
"n * k): ``blocks`` a list of (rows, columns) int64 buffers, the entries of each block with\n"
"repeats; ``starts`` the group's block starts and its end (int64); ``weights`` for each\n"
"column from starts[0] its idf (1 for none) and its k coefficients, in the scores' dtype;\n"
"``log_table`` log(c) + 1 at c - 1 for sublinear tf (at least as long as the most entries\n"
"of a row), or None; ``norm`` 0 (none), 1 (l1) or 2 (l2).");

static PyObject *
accumulate_group(PyObject *module, PyObject *args)
{
    PyObject *scores_obj, *blocks, *starts_obj, *weights_obj, *log_obj;
    Py_ssize_t k;
    int binary, norm;
    if (!PyArg_ParseTuple(args, "OnO!OOOpi:accumulate_group", &scores_obj, &k, &PyList_Type,
                          &blocks, &starts_obj, &weights_obj, &log_obj, &binary, &norm)) {
        return NULL;
    }
    Py_buffer scores, starts, weights, log_table;
    if (get_buffer(scores_obj, &scores, 4, 1, "scores") < 0) {
        PyErr_Clear();
        if (get_buffer(scores_obj, &scores, 8, 1, "scores") < 0) {
            return NULL;
        }
    }
    Py_ssize_t size = scores.itemsize, n_blocks = PyList_GET_SIZE(blocks), held = 0;
    PyObject *result = NULL;
    Py_buffer *entries = PyMem_Calloc(2 * (n_blocks > 0 ? n_blocks : 1), sizeof(Py_buffer));
    int64_t *keys = NULL, *scratch = NULL, *distinct = NULL;
    Py_ssize_t *per_row = NULL;
    void *values = NULL;
    int have_starts = 0, have_weights = 0, have_log = 0;
    if (entries == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (get_buffer(starts_obj, &starts, 8, 0, "starts") < 0) {
        goto done;
    }
    have_starts = 1;
    if (get_buffer(weights_obj, &weights, size, 0, "weights") < 0) {
        goto done;
    }
    have_weights = 1;
    if (log_obj != Py_None) {
        if (get_buffer(log_obj, &log_table, size, 0, "log_table") < 0) {
            goto done;
        }
        have_log = 1;
    }
    if (k < 1 || items(&scores) % k || norm < 0 || norm > 2 || items(&starts) != n_blocks + 1) {
        PyErr_SetString(PyExc_ValueError, "accumulate_group: inconsistent shapes or settings");
        goto done;
    }
    const int64_t *start = starts.buf;
    Py_ssize_t n = items(&scores) / k, total = 0;
    int column_bits = 0, row_bits = 0;
    while (column_bits < 62 && ((int64_t)1 << column_bits) < start[n_blocks] - start[0]) {
        column_bits++;
    }
    while (row_bits < 62 && ((int64_t)1 << row_bits) < n) {
        row_bits++;
    }
    if (start[0] < 0 || start[n_blocks] < start[0] || column_bits + row_bits > 62 ||
        items(&weights) < (start[n_blocks] - start[0]) * (1 + k)) {
        PyErr_SetString(PyExc_ValueError, "accumulate_group: bad starts, or weights too short");
        goto done;
    }
    for (Py_ssize_t b = 0; b < n_blocks; b++, held++) {
        PyObject *pair = PyList_GET_ITEM(blocks, b);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "accumulate_group: blocks are (rows, columns)");
            goto done;
        }
        if (get_buffer(PyTuple_GET_ITEM(pair, 0), &entries[2 * b], 8, 0, "rows") < 0) {
            goto done;
        }
        if (get_buffer(PyTuple_GET_ITEM(pair, 1), &entries[2 * b + 1], 8, 0, "columns") < 0) {
            PyBuffer_Release(&entries[2 * b]);
            goto done;
        }
        if (items(&entries[2 * b]) != items(&entries[2 * b + 1])) {
            PyErr_SetString(PyExc_ValueError, "accumulate_group: rows and columns differ");
            held++;
            goto done;
        }
        total += items(&entries[2 * b]);
    }
    keys = PyMem_Malloc(sizeof(int64_t) * (total > 0 ? total : 1));
    scratch = PyMem_Malloc(sizeof(int64_t) * (total > 0 ? total : 1));
    per_row = PyMem_Calloc(n > 0 ? n : 1, sizeof(Py_ssize_t));
    if (keys == NULL || scratch == NULL || per_row == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t b = 0; b < n_blocks; b++) {
        const int64_t *row = entries[2 * b].buf, *column = entries[2 * b + 1].buf;
        for (Py_ssize_t i = 0; i < items(&entries[2 * b]); i++, m++) {
            if (row[i] < 0 || row[i] >= n || column[i] < start[0] ||
                column[i] >= start[n_blocks]) {
                PyErr_SetString(PyExc_ValueError, "accumulate_group: an entry is out of range");
                goto done;
            }
            per_row[row[i]]++;
            keys[m] = row[i] << column_bits | (column[i] - start[0]);
        }
    }
    Py_ssize_t longest = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        longest = per_row[r] > longest ? per_row[r] : longest;
    }
    if (have_log && longest > items(&log_table)) {
        PyErr_SetString(PyExc_ValueError, "accumulate_group: log_table is shorter than a row");
        goto done;
    }
    distinct = PyMem_Malloc(sizeof(int64_t) * (longest > 0 ? longest : 1));
    values = PyMem_Malloc(size * (longest > 0 ? longest : 1));
    if (distinct == NULL || values == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const int64_t *sorted = radix_sort(keys, scratch, m, column_bits + row_bits);
    Group group = {n, k, n_blocks, start, column_bits, binary, norm};
    if (size == 4) {
        accumulate_float(scores.buf, &group, sorted, m, weights.buf,
                         have_log ? log_table.buf : NULL, distinct, values);
    }
    else {
        accumulate_double(scores.buf, &group, sorted, m, weights.buf,
                          have_log ? log_table.buf : NULL, distinct, values);
    }
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < 2 * held; i++) {
        PyBuffer_Release(&entries[i]);
    }
    PyMem_Free(entries);
    PyMem_Free(keys);
    PyMem_Free(scratch);
    PyMem_Free(per_row);
    PyMem_Free(distinct);
    PyMem_Free(values);
    if (have_starts) {
        PyBuffer_Release(&starts);
    }
    if (have_weights) {
        PyBuffer_Release(&weights);
    }
    if (have_log) {
        PyBuffer_Release(&log_table);
    }
    PyBuffer_Release(&scores);
    return result;
}


#define ACCUMULATE_DENSE(NAME, T)                                                               \
    static void NAME(T *scores, Py_ssize_t n, Py_ssize_t k, const T *dense, Py_ssize_t width,  \
                     const T *coef, Py_ssize_t offset)                                          \
    {                                                                                           \
        for (Py_ssize_t r = 0; r < n; r++) {                                                    \
            for (Py_ssize_t j = 0; j < width; j++) {                                            \
                T value = dense[r * width + j];                                                 \
                if (value != 0) { /* NaN included, as nonzero() keeps it */                     \
                    const T *weights = coef + (offset + j) * k;                                 \
                    for (Py_ssize_t c = 0; c < k; c++) {                                        \
                        scores[r * k + c] += value * weights[c];                                \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

ACCUMULATE_DENSE(dense_float, float)
ACCUMULATE_DENSE(dense_double, double)

PyDoc_STRVAR(accumulate_dense_doc,
"accumulate_dense(scores, k, dense, width, coef, offset)\n\n"
"Add a dense block's non-zero values times their coefficients to ``scores`` (n * k), row by\n"
"row in column order: ``dense`` is n * width in the scores' dtype, its columns start at\n"
"``offset`` in ``coef`` (n_features * k).");

static PyObject *
accumulate_dense(PyObject *module, PyObject *args)
{
    PyObject *scores_obj, *dense_obj, *coef_obj;
    Py_ssize_t k, width, offset;
    if (!PyArg_ParseTuple(args, "OnOnOn:accumulate_dense", &scores_obj, &k, &dense_obj, &width,
                          &coef_obj, &offset)) {
        return NULL;
    }
    Py_buffer scores, dense, coef;
    if (get_buffer(scores_obj, &scores, 4, 1, "scores") < 0) {
        PyErr_Clear();
        if (get_buffer(scores_obj, &scores, 8, 1, "scores") < 0) {
            return NULL;
        }
    }
    if (get_buffer(dense_obj, &dense, scores.itemsize, 0, "dense") < 0) {
        PyBuffer_Release(&scores);
        return NULL;
    }
    if (get_buffer(coef_obj, &coef, scores.itemsize, 0, "coef") < 0) {
        PyBuffer_Release(&scores);
        PyBuffer_Release(&dense);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = k > 0 ? items(&scores) / k : 0;
    if (k < 1 || width < 0 || offset < 0 || items(&scores) != n * k ||
        items(&dense) != n * width || (offset + width) * k > items(&coef)) {
        PyErr_SetString(PyExc_ValueError, "accumulate_dense: inconsistent shapes");
    }
    else {
        if (scores.itemsize == 4) {
            dense_float(scores.buf, n, k, dense.buf, width, coef.buf, offset);
        }
        else {
            dense_double(scores.buf, n, k, dense.buf, width, coef.buf, offset);
        }
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&scores);
    PyBuffer_Release(&dense);
    PyBuffer_Release(&coef);
    return result;
}

/* -- the module -------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"word_entries", word_entries, METH_VARARGS, word_entries_doc},
    {"char_wb_columns", char_wb_columns, METH_VARARGS, char_wb_columns_doc},
    {"packed_entries", packed_entries, METH_VARARGS, packed_entries_doc},
    {"accumulate_group", accumulate_group, METH_VARARGS, accumulate_group_doc},
    {"accumulate_dense", accumulate_dense, METH_VARARGS, accumulate_dense_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "loopline.serve._lean",
    .m_doc = "Compiled kernels of LinearTextPredictor (see loopline.serve.inference).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__lean(void)
{
    if (PyType_Ready(&KeyTableType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "KeyTable", (PyObject *)&KeyTableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
