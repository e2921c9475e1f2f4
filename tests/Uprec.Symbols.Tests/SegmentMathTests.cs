namespace Uprec.Symbols.Tests;

/// <summary>Offset/address arithmetic on hand-made segment tables shaped like real linker output.</summary>
public sealed class SegmentMathTests
{
    // Non-PIE with separate code: headers at 0x400000, text at 0x401000, data with .bss past its file size.
    private static readonly LoadSegment[] NonPie =
    [
        new(0x400000, 0x5f0, 0x0, 0x5f0, false, false),
        new(0x401000, 0x1b5, 0x1000, 0x1b5, true, false),
        new(0x402000, 0x10c, 0x2000, 0x10c, false, false),
        new(0x403e10, 0x228, 0x2e10, 0x218, false, true),
    ];

    // Old single-text layout where data shares the text's last file page (file ranges overlap at page granularity).
    private static readonly LoadSegment[] Shared =
    [
        new(0x0, 0x1800, 0x0, 0x1800, true, false),
        new(0x201000, 0x900, 0x1000, 0x900, false, true),
    ];

    [Theory]
    [InlineData(0x401000UL, 0x1000L)]
    [InlineData(0x401136UL, 0x1136L)]
    [InlineData(0x4011b4UL, 0x11b4L)]
    [InlineData(0x400000UL, 0x0L)]
    [InlineData(0x403e10UL, 0x2e10L)]
    [InlineData(0x404027UL, 0x3027L)]
    public void Vaddr_to_file_offset(ulong vaddr, long offset)
    {
        Assert.Equal(offset, SegmentMath.VaddrToFileOffset(NonPie, vaddr));
        Assert.Equal(vaddr, SegmentMath.FileOffsetToVaddr(NonPie, offset));
    }

    [Theory]
    [InlineData(0x4011b5UL)] // one past the text's file size
    [InlineData(0x404028UL)] // .bss: in memory, not in the file
    [InlineData(0x3fffffUL)]
    [InlineData(0UL)]
    [InlineData(ulong.MaxValue)]
    public void Addresses_without_file_bytes_have_no_offset(ulong vaddr)
    {
        Assert.Null(SegmentMath.VaddrToFileOffset(NonPie, vaddr));
    }

    [Theory]
    [InlineData(0x5f0L)] // gap between headers and text
    [InlineData(0x3028L)] // past the end of the file bytes
    [InlineData(-1L)]
    public void Offsets_outside_segments_have_no_address(long offset)
    {
        Assert.Null(SegmentMath.FileOffsetToVaddr(NonPie, offset));
    }

    [Fact]
    public void Executable_segment_wins_for_shared_file_bytes()
    {
        Assert.Equal(0x1100UL, SegmentMath.FileOffsetToVaddr(Shared, 0x1100));
        Assert.True(SegmentMath.IsExecutableFileOffset(Shared, 0x1100));
        Assert.Equal(0x201800UL, SegmentMath.FileOffsetToVaddr(Shared, 0x1800)); // only the data segment covers it
        Assert.False(SegmentMath.IsExecutableFileOffset(Shared, 0x1800));
    }

    [Fact]
    public void Executable_file_offsets_are_exactly_the_text_file_range()
    {
        Assert.False(SegmentMath.IsExecutableFileOffset(NonPie, 0xfff));
        Assert.True(SegmentMath.IsExecutableFileOffset(NonPie, 0x1000));
        Assert.True(SegmentMath.IsExecutableFileOffset(NonPie, 0x11b4));
        Assert.False(SegmentMath.IsExecutableFileOffset(NonPie, 0x11b5));
        Assert.False(SegmentMath.IsExecutableFileOffset([], 0));
    }
}
