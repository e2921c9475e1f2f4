using System.Buffers.Binary;

namespace Uprec.Symbols.Tests;

/// <summary>Every bad input ends as one-line SymbolException naming the file; nothing else escapes.</summary>
[Collection(SymbolFixturesCollection.Name)]
public sealed class MalformedElfTests(SymbolFixtures fx)
{
    private SymbolException LoadFails(string path)
    {
        var e = Assert.Throws<SymbolException>(() => ElfImage.Load(path));
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void Missing_file_and_directory()
    {
        Assert.Contains("does not exist", LoadFails(Path.Combine(fx.Dir, "nope")).Message);
        Assert.Contains("is a directory", LoadFails(fx.Dir).Message);
    }

    [Fact]
    public void Text_file_script_and_empty_file_are_not_elf()
    {
        Assert.Contains("is not an ELF file", LoadFails(fx.WriteFile("text", "hello world\n"u8)).Message);
        Assert.Contains("it is a script", LoadFails(fx.WriteFile("script.sh", "#!/bin/sh\necho hi\n"u8)).Message);
        Assert.Contains("is not an ELF file", LoadFails(fx.WriteFile("empty", ReadOnlySpan<byte>.Empty)).Message);
        Assert.Contains("static archive", LoadFails(fx.WriteFile("lib.a", "!<arch>\n"u8)).Message);
    }

    [Fact]
    public void Thirty_two_bit_other_machine_and_relocatable_are_refused()
    {
        byte[] elf = File.ReadAllBytes(fx.Pie);
        byte[] class32 = (byte[])elf.Clone();
        class32[4] = 1;
        Assert.Contains("32-bit", LoadFails(fx.WriteFile("elf32", class32)).Message);

        byte[] arm = (byte[])elf.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(arm.AsSpan(18), 183);
        Assert.Contains("AArch64", LoadFails(fx.WriteFile("arm64", arm)).Message);

        byte[] bigEndian = (byte[])elf.Clone();
        bigEndian[5] = 2;
        Assert.Contains("little-endian", LoadFails(fx.WriteFile("be", bigEndian)).Message);

        Assert.Contains("relocatable object", LoadFails(fx.Object).Message);
    }

    [Fact]
    public void Truncated_files_fail_cleanly_at_every_length()
    {
        byte[] elf = File.ReadAllBytes(fx.Pie);
        int failures = 0;
        // Every length through the headers, then a stride: truncation loses the section headers at the end.
        for (int length = 1; length < elf.Length; length += length < 256 ? 1 : 97)
        {
            string path = fx.WriteFile($"trunc-{length}", elf.AsSpan(0, length));
            try
            {
                ElfImage.Load(path);
            }
            catch (SymbolException e)
            {
                Assert.Contains(path, e.Message);
                failures++;
            }
            File.Delete(path);
        }
        Assert.True(failures > 0);
        // Cut just before the section header table: the message says truncated.
        Assert.Contains("truncated", LoadFails(fx.WriteFile("trunc-end", elf.AsSpan(0, elf.Length - 1))).Message);
    }

    [Fact]
    public void Random_corruption_never_throws_anything_but_SymbolException()
    {
        byte[] original = File.ReadAllBytes(fx.SharedLib);
        long shoff = BinaryPrimitives.ReadInt64LittleEndian(original.AsSpan(40));
        var random = new Random(12345); // fixed seed: the same inputs on every run
        string path = Path.Combine(fx.Dir, "fuzz");
        for (int round = 0; round < 600; round++)
        {
            byte[] bytes = (byte[])original.Clone();
            int flips = 1 + random.Next(8);
            for (int i = 0; i < flips; i++)
            {
                // Aim at the places parsers trust: ELF header, program headers, section headers, else anywhere.
                int at = random.Next(4) switch
                {
                    0 => 16 + random.Next(48),
                    1 => 64 + random.Next(56 * 8),
                    2 => (int)Math.Min(shoff + random.Next(64 * 30), bytes.Length - 1),
                    _ => random.Next(bytes.Length),
                };
                bytes[at] = (byte)random.Next(256);
            }
            File.WriteAllBytes(path, bytes);
            try
            {
                ElfImage image = ElfImage.Load(path);
                foreach (ElfSymbol f in image.Functions)
                {
                    Assert.True(f.FileOffset >= 0 && f.FileOffset < bytes.Length);
                }
            }
            catch (SymbolException)
            {
                // Expected for most inputs; any other exception type fails the test.
            }
        }
    }

    [Fact]
    public void Hostile_counts_are_bounded_by_the_limits()
    {
        byte[] elf = File.ReadAllBytes(fx.Pie);
        byte[] many = (byte[])elf.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(many.AsSpan(56), 0xfff0); // e_phnum
        Assert.Contains("program headers", LoadFails(fx.WriteFile("many-ph", many)).Message);

        var tight = SymbolLimits.Default with { MaxSymbolsPerTable = 3 };
        var e = Assert.Throws<SymbolException>(() => ElfImage.Load(fx.Pie, tight));
        Assert.Contains("limit 3", e.Message);
    }
}
