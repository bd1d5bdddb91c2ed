/*
 * Compiled scoring of LexiconScores (loopline/train/text.py): the same rules, arithmetic
 * and order as LexiconScores.score, which stays the reference (and the path where this
 * extension is not built). Python floats are IEEE doubles and every operation below is the
 * one Python performs there (built with -ffp-contract=off, so no multiply-add is fused), so
 * the scores are equal bit for bit; tests/train/test_lexicon_kernel.py checks that on real
 * tweets and crafted cases.
 *
 * What stays in Python: expanding a text (HTML entities, emoji descriptions; called here
 * only for texts holding "&" or a non-ASCII character) and analysing a token the cache does
 * not hold yet (which also caches it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <string.h>

/* VADER's constants, as in text.py. */
#define CAPS_INCREMENT 0.733
#define NEGATION_SCALAR -0.74
#define BUT_BEFORE 0.5
#define BUT_AFTER 1.5
#define COMPOUND_ALPHA 15.0
static const double BOOSTER_DAMPING[3] = {1.0, 0.95, 0.9};

typedef struct {
    double valence, boost;
    int negates, upper;
    int is_no, is_kind, is_of, is_but;
} Token;

static int
is_word(PyObject *lower, const char *word, Py_ssize_t length)
{
    return PyUnicode_GET_LENGTH(lower) == length &&
           PyUnicode_CompareWithASCIIString(lower, word) == 0;
}

/* One cached token's analysis: (lower, valence, boost, negates, is_upper). */
static int
read_token(PyObject *info, Token *token)
{
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 5 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(info, 0))) {
        PyErr_SetString(PyExc_TypeError,
                        "lexicon token info must be (lower, valence, boost, negates, upper)");
        return -1;
    }
    PyObject *lower = PyTuple_GET_ITEM(info, 0);
    token->valence = PyFloat_AsDouble(PyTuple_GET_ITEM(info, 1));
    token->boost = PyFloat_AsDouble(PyTuple_GET_ITEM(info, 2));
    if (PyErr_Occurred()) {
        return -1;
    }
    token->negates = PyObject_IsTrue(PyTuple_GET_ITEM(info, 3));
    token->upper = PyObject_IsTrue(PyTuple_GET_ITEM(info, 4));
    if (token->negates < 0 || token->upper < 0) {
        return -1;
    }
    token->is_no = is_word(lower, "no", 2);
    token->is_kind = is_word(lower, "kind", 4);
    token->is_of = is_word(lower, "of", 2);
    token->is_but = is_word(lower, "but", 3);
    return 0;
}

/* VADER's emphasis: 0.292 per "!" (at most 4), and for 2+ "?" 0.18 each (at most 0.96). */
static double
punctuation_emphasis(PyObject *text)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t exclamations = 0, questions = 0, length = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        exclamations += c == '!';
        questions += c == '?';
    }
    double emphasis = (double)(exclamations < 4 ? exclamations : 4) * 0.292;
    if (questions > 3) {
        return emphasis + 0.96;
    }
    return emphasis + (questions > 1 ? (double)questions * 0.18 : 0.0);
}

/* LexiconScores.score on analysed tokens; writes (compound, positive, negative). */
static void
score(const Token *tokens, Py_ssize_t n, PyObject *text, double *out)
{
    Py_ssize_t sentiment = 0, uppers = 0, but = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        sentiment += tokens[i].valence != 0.0;
        uppers += tokens[i].upper;
        if (but < 0 && tokens[i].is_but) {
            but = i;
        }
    }
    out[0] = out[1] = out[2] = 0.0;
    if (!sentiment) {
        return;
    }
    int caps = 0 < uppers && uppers < n;
    double total = 0.0, positive = 0.0, negative = 0.0;
    Py_ssize_t neutral = n - sentiment;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (tokens[i].valence == 0.0) {
            continue;
        }
        double valence = tokens[i].valence;
        if (i + 1 < n && ((tokens[i].is_no && tokens[i + 1].valence != 0.0) ||
                          (tokens[i].is_kind && tokens[i + 1].is_of))) {
            neutral += 1;
            continue;
        }
        if (tokens[i].upper && caps) {
            valence += valence > 0 ? CAPS_INCREMENT : -CAPS_INCREMENT;
        }
        int negated = 0;
        for (Py_ssize_t back = 1; back <= 3; back++) {
            if (i < back) {
                break;
            }
            const Token *before = &tokens[i - back];
            if (before->negates || before->is_no) {
                negated = 1;
            }
            if (before->boost != 0.0 && before->valence == 0.0) {
                double step = valence > 0 ? before->boost : -before->boost;
                if (before->upper && caps) {
                    step += valence > 0 ? CAPS_INCREMENT : -CAPS_INCREMENT;
                }
                valence += step * BOOSTER_DAMPING[back - 1];
            }
        }
        if (negated) {
            valence *= NEGATION_SCALAR;
        }
        if (but >= 0 && i != but) {
            valence *= i < but ? BUT_BEFORE : BUT_AFTER;
        }
        total += valence;
        if (valence > 0) {
            positive += valence + 1.0;
        }
        else if (valence < 0) {
            negative += valence - 1.0;
        }
        else {
            neutral += 1;
        }
    }
    if (total != 0.0) {
        double emphasis = punctuation_emphasis(text);
        total += total > 0 ? emphasis : -emphasis;
        if (positive > -negative) {
            positive += emphasis;
        }
        else if (positive < -negative) {
            negative -= emphasis;
        }
    }
    double compound = total / sqrt(total * total + COMPOUND_ALPHA);
    double denominator = positive - negative + (double)neutral;
    out[0] = compound;
    if (denominator != 0.0) {
        out[1] = positive / denominator;
        out[2] = -negative / denominator;
    }
}

PyDoc_STRVAR(score_texts_doc,
"score_texts(texts, cache, analyse, expand, out) -> int\n\n"
"LexiconScores.score of each text of the list ``texts`` (non-strings through str) into\n"
"``out``, a writable float64 buffer of len(texts) * 3. ``expand(text)`` rewrites a text\n"
"holding '&' or a non-ASCII character; each whitespace-separated token is looked up in\n"
"``cache`` (a dict of token analyses) and ``analyse(token)`` analyses (and caches) one it\n"
"lacks. Returns the number of tokens looked up.");

static PyObject *
score_texts(PyObject *module, PyObject *args)
{
    PyObject *texts, *cache, *analyse, *expand, *out_obj;
    if (!PyArg_ParseTuple(args, "O!O!OOO:score_texts", &PyList_Type, &texts, &PyDict_Type,
                          &cache, &analyse, &expand, &out_obj)) {
        return NULL;
    }
    Py_buffer out;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) <
        0) {
        return NULL;
    }
    Py_ssize_t n_texts = PyList_GET_SIZE(texts), lookups = 0, room = 0;
    Token *tokens = NULL;
    PyObject *result = NULL;
    if (out.itemsize != 8 || out.len != n_texts * 3 * 8) {
        PyErr_SetString(PyExc_ValueError, "score_texts: out must be float64, len(texts) * 3");
        goto done;
    }
    double *scores = out.buf;
    for (Py_ssize_t t = 0; t < n_texts; t++) {
        PyObject *text = PyList_GET_ITEM(texts, t);
        text = PyUnicode_Check(text) ? Py_NewRef(text) : PyObject_Str(text);
        if (text == NULL) {
            goto done;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        if (!PyUnicode_IS_ASCII(text) || PyUnicode_FindChar(text, '&', 0, length, 1) >= 0) {
            PyObject *expanded = PyObject_CallOneArg(expand, text);
            Py_DECREF(text);
            if (expanded == NULL) {
                goto done;
            }
            if (!PyUnicode_Check(expanded)) {
                Py_DECREF(expanded);
                PyErr_SetString(PyExc_TypeError, "score_texts: expand must return str");
                goto done;
            }
            text = expanded;
        }
        PyObject *raws = PyUnicode_Split(text, NULL, -1);
        if (raws == NULL) {
            Py_DECREF(text);
            goto done;
        }
        Py_ssize_t n = PyList_GET_SIZE(raws);
        lookups += n;
        if (n > room) {
            room = 2 * n;
            PyMem_Free(tokens);
            tokens = PyMem_Malloc(sizeof(Token) * room);
            if (tokens == NULL) {
                PyErr_NoMemory();
                Py_DECREF(raws);
                Py_DECREF(text);
                goto done;
            }
        }
        int failed = 0;
        for (Py_ssize_t i = 0; i < n && !failed; i++) {
            PyObject *raw = PyList_GET_ITEM(raws, i);
            PyObject *info = PyDict_GetItemWithError(cache, raw); /* borrowed */
            if (info != NULL) {
                failed = read_token(info, &tokens[i]) < 0;
            }
            else if (PyErr_Occurred()) {
                failed = 1;
            }
            else {
                info = PyObject_CallOneArg(analyse, raw);
                failed = info == NULL || read_token(info, &tokens[i]) < 0;
                Py_XDECREF(info);
            }
        }
        if (!failed) {
            score(tokens, n, text, scores + 3 * t);
        }
        Py_DECREF(raws);
        Py_DECREF(text);
        if (failed) {
            goto done;
        }
    }
    result = PyLong_FromSsize_t(lookups);
done:
    PyMem_Free(tokens);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"score_texts", score_texts, METH_VARARGS, score_texts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "loopline.train._lexicon",
    .m_doc = "Compiled scoring of LexiconScores (see loopline.train.text).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__lexicon(void)
{
    return PyModule_Create(&module);
}
