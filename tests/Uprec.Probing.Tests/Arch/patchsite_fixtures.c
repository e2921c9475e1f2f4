/* Real compiler output for PatchSiteAnalyzerTests: each function is one case of the patch-site rules.
 * The tests hold the bytes (so they do not depend on the compiler installed); they were produced by
 *   gcc -O2 -fPIC -shared -nostdlib -fcf-protection=none -o plain.so patchsite_fixtures.c
 *   gcc -O2 -fPIC -shared -nostdlib -fcf-protection=full -o cet.so   patchsite_fixtures.c
 * (gcc 12.2, Debian 12) and read with objdump -d; the address in each test vector is the symbol's. */
extern int ext(int);
extern int (*hook)(int);                              /* through the GOT */
__attribute__((visibility("hidden"))) int (*local_hook)(int); /* rip-relative, no GOT */
extern int (*getfp(int))(int);

/* 4 bytes: lea eax,[rdi+1]; ret */
int four(int x) { return x + 1; }

/* push rbp; mov rbp,rsp; sub rsp,100h (a frame pointer and a big local array) */
__attribute__((optimize("no-omit-frame-pointer"))) int framed(int n) {
    volatile char buf[256];
    for (int i = 0; i < n && i < 256; i++) buf[i] = (char)i;
    return ext(buf[n & 255]) + buf[3];
}

/* -Os: xor eax,eax, then the loop starts at byte 2 and jumps back there */
__attribute__((optimize("Os"))) long loop_back(long n) {
    long s = 0;
    do { s += n ^ (s >> 3); n--; } while (n);
    return s;
}

/* a dense switch: lea rdx,[rip+table]; movsxd rax,[rdx+rdi*4]; add rax,rdx; jmp rax */
int sw(int x) {
    switch (x) {
    case 0: return ext(10);
    case 1: return ext(11) + 3;
    case 2: return ext(12) * 5;
    case 3: return ext(x) - 7;
    case 4: return ext(14) ^ 9;
    case 5: return 77;
    case 6: return ext(16) << 2;
    default: return -1;
    }
}

/* tail calls through memory: jmp [rip+x]; mov rax,[rip+got]; jmp [rax]; pop rbx...; jmp rax */
int tail_rip(int x) { return local_hook(x); }
int tail_got(int x) { return hook(x); }
__attribute__((optimize("no-omit-frame-pointer"))) int tail_pop(int x) {
    int (*f)(int) = getfp(x);
    int y = ext(x);
    return f(y + x);
}

/* a call within the first 5 bytes: sub rsp,8; call ext@plt */
int call_first(int x) { return ext(x) + 1; }

/* the loop's head is past the patch */
long loop_head(long n) {
    long s = 0;
    do { s += n * 3; n--; } while (n > 0);
    return s;
}
