namespace Uprec.Probing.Arch;

/// <summary>
/// What the trap hit path does with the instruction displaced by int3: a closed set of outcomes,
/// chosen once per probe site by <see cref="TrapPlanner.Plan"/>.
/// </summary>
/// <param name="Length">Length in bytes of the original instruction at the site (0 when nothing could be decoded).</param>
/// <param name="Instruction">The instruction as Iced formats it, for messages.</param>
public abstract record TrapPlan(int Length, string Instruction);

/// <summary>
/// Write <paramref name="SlotCode"/> at the site's slot once; on every hit set RIP to the slot.
/// The code ends by reaching the instruction that follows the site (or the branch target), never the site itself.
/// </summary>
public sealed record OutOfLinePlan(int Length, string Instruction, byte[] SlotCode) : TrapPlan(Length, Instruction);

/// <summary>On every hit run <see cref="Emulator.TryExecute"/> on the stopped thread's registers.</summary>
public sealed record EmulatePlan(int Length, string Instruction, Iced.Intel.Instruction Decoded) : TrapPlan(Length, Instruction);

/// <summary>The site cannot be probed through the trap path; <paramref name="Reason"/> says why, for the user.</summary>
public sealed record UnsupportedPlan(int Length, string Instruction, string Reason) : TrapPlan(Length, Instruction);
