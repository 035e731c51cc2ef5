/* The seed format's fast path in C: logpipe.process.parse.parse_text_chunk's common case.
 *
 * parse_seed(data, base, measurement) walks `data` line by line. A line that _TEXT_FAST
 * would take (the same character classes and lengths) AND whose date, time and latency the
 * careful path accepts becomes a point, written as point_line writes it. Every other line
 * that is not blank is handed back as (start, end) for the careful path, with a None in the
 * points list where its result belongs, so that the caller keeps the chunk's order. The
 * argument that a point made here is byte for byte the careful path's is in parse.py, next
 * to the caller; the comments here say which check stands for which Python rule.
 *
 * CPython C API only: no third-party code, so that the processor's RSS stays small.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NS_PER_SECOND 1000000000LL
#define SECONDS_PER_DAY 86400LL
/* logpipe.schema: the whole seconds InfluxDB can store */
#define MIN_EPOCH_SECONDS (-9223372036LL)
#define MAX_EPOCH_SECONDS 9223372035LL

#define CUSTOMER_MAX 128
#define PATH_MAX_LEN 2048
#define LATENCY_PART_MAX 9
/* measurement (bounded below) + every field at its longest, with room to spare */
#define MEASUREMENT_MAX 64
#define POINT_MAX (MEASUREMENT_MAX + CUSTOMER_MAX + PATH_MAX_LEN + 256)

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* [A-Za-z0-9_.:-]: the schema's customer-id rule; none of these needs tag escaping */
static inline int is_customer_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

/* [^\x00-\x20"\\\x7f], ASCII only: no control character, no whitespace str.split() splits
 * on, and neither of the two characters a field string escapes. Bytes >= 0x80 are refused
 * too (the caller only passes ASCII chunks; this keeps the C side safe on its own). */
static inline int is_path_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\';
}

static inline int two_digits(const unsigned char *p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, as datetime.date): H. Hinnant's
 * days_from_civil. Exact for every year the pattern can write (0000..9999). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

/* Writes the decimal digits of v at out; returns how many (Python's str(int) for an int64). */
static int write_int64(char *out, int64_t v)
{
    char tmp[24];
    int n = 0, len = 0;
    /* through uint64 so that INT64_MIN does not overflow (it cannot occur here anyway) */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0)
        out[len++] = '-';
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n)
        out[len++] = tmp[--n];
    return len;
}

/* The latency's repr, remembered: float repr is the slow part of a line (dtoa and a
 * malloc), and a log holds few distinct latency texts. Direct-mapped by a hash of the text;
 * an entry holds only what PyOS_double_to_string returned for its text, so a hit is exactly
 * repr(float(text)). */
#define LATENCY_CACHE_SIZE 4096
typedef struct {
    unsigned char text_len; /* 0: empty */
    unsigned char repr_len;
    char text[2 * LATENCY_PART_MAX + 1];
    char repr[32];
} latency_entry;
static latency_entry latency_cache[LATENCY_CACHE_SIZE];

/* repr(float(text)) into out (at least 32 bytes); returns its length, or -1 with an
 * exception set. text is [0-9]{1,9}(\.[0-9]{1,9})?: finite, >= 0, at most 19 characters,
 * so parse_latency accepts it and the repr is short. */
static int latency_repr(const char *text, Py_ssize_t len, char *out)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)text[i]) * 16777619u;
    latency_entry *e = &latency_cache[h % LATENCY_CACHE_SIZE];
    if (e->text_len == len && memcmp(e->text, text, (size_t)len) == 0) {
        memcpy(out, e->repr, e->repr_len);
        return e->repr_len;
    }
    char buf[2 * LATENCY_PART_MAX + 2];
    memcpy(buf, text, (size_t)len);
    buf[len] = '\0';
    char *end = NULL;
    /* float(str) parses with this same function (through _Py_string_to_number_with_
     * underscores; the pattern has no underscore), so the same double comes out */
    double x = PyOS_string_to_double(buf, &end, NULL);
    if (x == -1.0 && PyErr_Occurred())
        return -1;
    if (end != buf + len) {
        PyErr_SetString(PyExc_ValueError, "_fastparse: latency not fully parsed");
        return -1;
    }
    /* exactly float.__repr__ (Objects/floatobject.c, float_repr) */
    char *r = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL)
        return -1;
    size_t rlen = strlen(r);
    if (rlen >= sizeof(e->repr)) {
        PyMem_Free(r);
        PyErr_SetString(PyExc_ValueError, "_fastparse: latency repr too long");
        return -1;
    }
    memcpy(out, r, rlen);
    e->text_len = (unsigned char)len;
    memcpy(e->text, text, (size_t)len);
    e->repr_len = (unsigned char)rlen;
    memcpy(e->repr, r, rlen);
    PyMem_Free(r);
    return (int)rlen;
}

typedef struct {
    const unsigned char *customer;
    Py_ssize_t customer_len;
    const unsigned char *path;
    Py_ssize_t path_len;
    const unsigned char *status;
    const unsigned char *latency;
    Py_ssize_t latency_len;
    int64_t day_start;
    int64_t seconds;
} seed_line;

/* The run of `allowed` characters at p[*i], of 1 to `max` of them and followed by a space:
 * its length, with *i moved past the space; 0 (and *i left anywhere) if there is none. */
static inline Py_ssize_t field_then_space(const unsigned char *p, Py_ssize_t n, Py_ssize_t *i,
                                          int (*allowed)(unsigned char), Py_ssize_t max)
{
    const Py_ssize_t start = *i;
    Py_ssize_t at = start;
    while (at < n && allowed(p[at]))
        at++;
    const Py_ssize_t len = at - start;
    if (len < 1 || len > max || at >= n || p[at] != ' ')
        return 0;
    *i = at + 1;
    return len;
}

/* 1 if the line (without its '\n') is one _TEXT_FAST takes and the careful path turns into
 * a point; fills *out. 0 otherwise: the careful path decides (and says why). */
static int match_seed(const unsigned char *p, Py_ssize_t n, seed_line *out)
{
    /* \r?$ : one optional \r before the end; no field's class admits \r */
    if (n > 0 && p[n - 1] == '\r')
        n--;
    /* date and time: fixed width, "YYYY-MM-DD HH:MM:SS " */
    if (n < 20)
        return 0;
    static const char shape[] = "0000-00-00 00:00:00 ";
    for (int i = 0; i < 20; i++) {
        if (shape[i] == '0' ? !is_digit(p[i]) : p[i] != (unsigned char)shape[i])
            return 0;
    }
    /* _second_of_day: hours <= 23, minutes <= 59, seconds <= 59 */
    const int hours = two_digits(p + 11), minutes = two_digits(p + 14),
              secs = two_digits(p + 17);
    if (hours > 23 || minutes > 59 || secs > 59)
        return 0;
    /* _day_start: date.fromisoformat (a real calendar date, year >= 1) ... */
    const int year = two_digits(p) * 100 + two_digits(p + 2);
    const int month = two_digits(p + 5), day = two_digits(p + 8);
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
        return 0;
    const int64_t day_start = days_from_civil(year, month, day) * SECONDS_PER_DAY;
    /* ... a day away from the ends of what InfluxDB stores */
    if (!(MIN_EPOCH_SECONDS + SECONDS_PER_DAY < day_start &&
          day_start < MAX_EPOCH_SECONDS - SECONDS_PER_DAY))
        return 0;

    Py_ssize_t i = 20;
    /* customer [A-Za-z0-9_.:-]{1,128}, path [^\x00-\x20"\\\x7f]{1,2048}, each then a space */
    const Py_ssize_t customer = i;
    const Py_ssize_t customer_len = field_then_space(p, n, &i, is_customer_char, CUSTOMER_MAX);
    if (customer_len == 0)
        return 0;
    const Py_ssize_t path = i;
    const Py_ssize_t path_len = field_then_space(p, n, &i, is_path_char, PATH_MAX_LEN);
    if (path_len == 0)
        return 0;
    /* status [1-5][0-9][0-9], then a space */
    if (n - i < 5 || p[i] < '1' || p[i] > '5' || !is_digit(p[i + 1]) || !is_digit(p[i + 2]) ||
        p[i + 3] != ' ')
        return 0;
    const Py_ssize_t status = i;
    i += 4;
    /* latency [0-9]{1,9}(\.[0-9]{1,9})? to the end of the line */
    const Py_ssize_t latency = i;
    Py_ssize_t digits = 0;
    while (i < n && is_digit(p[i]))
        i++, digits++;
    if (digits < 1 || digits > LATENCY_PART_MAX)
        return 0;
    if (i < n && p[i] == '.') {
        i++;
        digits = 0;
        while (i < n && is_digit(p[i]))
            i++, digits++;
        if (digits < 1 || digits > LATENCY_PART_MAX)
            return 0;
    }
    if (i != n)
        return 0;

    out->customer = p + customer;
    out->customer_len = customer_len;
    out->path = p + path;
    out->path_len = path_len;
    out->status = p + status;
    out->latency = p + latency;
    out->latency_len = n - latency;
    out->day_start = day_start;
    out->seconds = day_start + hours * 3600 + minutes * 60 + secs;
    return 1;
}

/* bytes.strip() would leave nothing: the careful path skips the line */
static int is_blank(const unsigned char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!Py_ISSPACE(p[i]))
            return 0;
    }
    return 1;
}

static PyObject *new_ascii(const char *text, Py_ssize_t len)
{
    PyObject *s = PyUnicode_New(len, 127);
    if (s != NULL)
        memcpy(PyUnicode_1BYTE_DATA(s), text, (size_t)len);
    return s;
}

static PyObject *parse_seed(PyObject *module, PyObject *args)
{
    Py_buffer data;
    long long slot_base; /* (salt + chunk offset) % 10**9, from the caller */
    const char *measurement;
    Py_ssize_t measurement_len;
    if (!PyArg_ParseTuple(args, "y*Ls#:parse_seed", &data, &slot_base, &measurement,
                          &measurement_len))
        return NULL;
    (void)module;
    PyObject *points = NULL, *days = NULL, *others = NULL;
    if (slot_base < 0 || slot_base >= NS_PER_SECOND) {
        PyErr_SetString(PyExc_ValueError, "base must be in [0, 10**9): pass base % 10**9");
        goto error;
    }
    /* the measurement is written as it stands, as point_line does; bound it for the buffer */
    if (measurement_len < 1 || measurement_len > MEASUREMENT_MAX) {
        PyErr_SetString(PyExc_ValueError, "measurement must be 1 to 64 bytes");
        goto error;
    }
    for (Py_ssize_t k = 0; k < measurement_len; k++) {
        if ((unsigned char)measurement[k] >= 0x80) {
            PyErr_SetString(PyExc_ValueError, "measurement must be ASCII");
            goto error;
        }
    }
    points = PyList_New(0);
    days = PySet_New(NULL);
    others = PyList_New(0);
    if (points == NULL || days == NULL || others == NULL)
        goto error;

    const unsigned char *buf = data.buf;
    const Py_ssize_t size = data.len;
    char point[POINT_MAX];
    memcpy(point, measurement, (size_t)measurement_len);
    static const char tag[] = ",customer_id=";
    memcpy(point + measurement_len, tag, sizeof(tag) - 1);
    const Py_ssize_t prefix_len = measurement_len + (Py_ssize_t)sizeof(tag) - 1;
    /* the int of the last day seen: lines of a chunk mostly share one day */
    PyObject *last_day = NULL;
    int64_t last_day_value = 0;

    Py_ssize_t start = 0;
    while (start < size) {
        const unsigned char *nl = memchr(buf + start, '\n', (size_t)(size - start));
        const Py_ssize_t end = nl ? nl - buf : size;
        seed_line f;
        if (match_seed(buf + start, end - start, &f)) {
            char *w = point + prefix_len;
            memcpy(w, f.customer, (size_t)f.customer_len);
            w += f.customer_len;
            memcpy(w, ",status_class=", 14);
            w += 14;
            *w++ = (char)f.status[0];
            *w++ = 'x';
            *w++ = 'x';
            memcpy(w, " status=", 8);
            w += 8;
            memcpy(w, f.status, 3);
            w += 3;
            memcpy(w, "i,latency=", 10);
            w += 10;
            const int rlen = latency_repr((const char *)f.latency, f.latency_len, w);
            if (rlen < 0)
                goto error_day;
            w += rlen;
            memcpy(w, ",path=\"", 7);
            w += 7;
            memcpy(w, f.path, (size_t)f.path_len);
            w += f.path_len;
            *w++ = '"';
            *w++ = ' ';
            /* point_timestamp: seconds * 10**9 + (salt + offset) % 10**9; |seconds| <
             * 9223372035, so the product fits an int64, and the slot sum fits too */
            const int64_t stamp =
                f.seconds * NS_PER_SECOND + (slot_base + (int64_t)start) % NS_PER_SECOND;
            w += write_int64(w, stamp);

            PyObject *text = new_ascii(point, w - point);
            if (text == NULL)
                goto error_day;
            int failed = PyList_Append(points, text);
            Py_DECREF(text);
            if (failed)
                goto error_day;

            if (last_day == NULL || last_day_value != f.day_start) {
                Py_XDECREF(last_day);
                last_day = PyLong_FromLongLong(f.day_start);
                last_day_value = f.day_start;
                if (last_day == NULL)
                    goto error_day;
            }
            PyObject *customer = new_ascii((const char *)f.customer, f.customer_len);
            if (customer == NULL)
                goto error_day;
            PyObject *key = PyTuple_New(2);
            if (key == NULL) {
                Py_DECREF(customer);
                goto error_day;
            }
            Py_INCREF(last_day);
            PyTuple_SET_ITEM(key, 0, customer);
            PyTuple_SET_ITEM(key, 1, last_day);
            failed = PySet_Add(days, key);
            Py_DECREF(key);
            if (failed)
                goto error_day;
        } else if (!is_blank(buf + start, end - start)) {
            PyObject *span = Py_BuildValue("(nn)", start, end);
            if (span == NULL)
                goto error_day;
            int failed = PyList_Append(others, span);
            Py_DECREF(span);
            if (failed || PyList_Append(points, Py_None))
                goto error_day;
        }
        start = end + 1;
    }
    Py_XDECREF(last_day);
    PyBuffer_Release(&data);
    return Py_BuildValue("(NNN)", points, days, others);

error_day:
    Py_XDECREF(last_day);
error:
    Py_XDECREF(points);
    Py_XDECREF(days);
    Py_XDECREF(others);
    PyBuffer_Release(&data);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse_seed", parse_seed, METH_VARARGS,
     "parse_seed(data, base, measurement) -> (points, days, others)\n\n"
     "The seed-format lines of `data` that the fast path takes, as points; `base` is\n"
     "(salt + chunk offset) % 10**9. `points` holds None where a line of `others`\n"
     "((start, end) byte spans, blank lines left out) goes; `days` is the set of\n"
     "(customer, first second of the UTC day) of the points made here."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastparse", "The seed format's fast path (see parse.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastparse(void) { return PyModule_Create(&module); }
