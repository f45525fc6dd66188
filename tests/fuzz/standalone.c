/* standalone.c - runs a fuzz target over the files named on the command
 * line, without libFuzzer, so every normal build checks that the targets
 * compile and that the seed corpora pass. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    int i;

    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        uint8_t *buf;
        long size;

        if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
            fseek(f, 0, SEEK_SET) != 0) {
            perror(argv[i]);
            return 1;
        }
        buf = malloc((size_t)size + 1);
        if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
            perror(argv[i]);
            return 1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)size);
        free(buf);
    }
    printf("%d inputs ran\n", argc - 1);
    return 0;
}
