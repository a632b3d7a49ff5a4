/*
 * standalone.c — replays inputs through a fuzz harness without libFuzzer,
 * so that the regression inputs and seed corpora are tested by any
 * compiler (gcc with ASan/UBSan in `make fuzz-regress`).
 *
 *     fuzz-<target> FILE_OR_DIR...
 *
 * Each file is read whole and passed once to LLVMFuzzerTestOneInput();
 * directories are walked one level deep, in name order.  A failed
 * invariant aborts (as under libFuzzer); otherwise the last line is
 * "<target>: N passed, 0 failed".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int s_run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *more = realloc(buf, cap *= 2);
            if (!more) {
                free(buf);
                buf = NULL;
            }
            buf = more;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    /* an exact-size copy, so that ASan sees reads past the end */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int s_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int passed = 0, failed = 0;
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            failed++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (s_run_file(argv[i]) == 0)
                passed++;
            else
                failed++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            failed++;
            continue;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                names = realloc(names, cap * sizeof *names);
                if (!names)
                    abort();
            }
            if (asprintf(&names[n++], "%s/%s", argv[i], e->d_name) < 0)
                abort();
        }
        closedir(d);
        if (n)
            qsort(names, n, sizeof *names, s_cmp);
        for (size_t k = 0; k < n; k++) {
            if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode)) {
                if (s_run_file(names[k]) == 0)
                    passed++;
                else
                    failed++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("%s: %d passed, %d failed\n", name, passed, failed);
    return failed ? 1 : 0;
}
