using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Operations;
using ModelGen.Generators.Models;
using static ModelGen.Generators.Diagnostics.DiagnosticDescriptors;

namespace ModelGen.Generators.Masks;

/// <summary>
/// Checks that a mask predicate can run inside a kernel: walks its operations, and those of the source methods it calls,
/// for allocations, calls through references (virtual, interface or instance calls on reference types), instance or
/// mutable state, recursion and exceptions. Each finding is an error at the offending syntax.
/// </summary>
internal static class KernelSafety
{
    public static void Check(IMethodSymbol predicate, Compilation compilation, List<DiagnosticInfo> diagnostics, CancellationToken cancellationToken)
    {
        var walker = new Walker(predicate, compilation, diagnostics, cancellationToken);
        walker.Method(predicate);
    }

    private sealed class Walker(IMethodSymbol predicate, Compilation compilation, List<DiagnosticInfo> diagnostics, CancellationToken cancellationToken)
    {
        private readonly HashSet<IMethodSymbol> _checked = new(SymbolEqualityComparer.Default);
        private readonly Stack<IMethodSymbol> _chain = new();
        private readonly string _name = predicate.Name;

        private void Report(DiagnosticDescriptor descriptor, SyntaxNode syntax, string what) =>
            diagnostics.Add(DiagnosticInfo.Create(descriptor, LocationInfo.From(syntax), _name, what));

        public void Method(IMethodSymbol method)
        {
            if (!_checked.Add(method)) return;
            _chain.Push(method);
            foreach (SyntaxReference reference in method.DeclaringSyntaxReferences)
            {
                SyntaxNode syntax = reference.GetSyntax(cancellationToken);
                SemanticModel model = compilation.GetSemanticModel(syntax.SyntaxTree);
                IOperation? body = model.GetOperation(syntax, cancellationToken);
                if (body is null) continue;
                foreach (IOperation operation in body.DescendantsAndSelf()) Visit(operation);
            }
            _chain.Pop();
        }

        private void Visit(IOperation operation)
        {
            switch (operation)
            {
                case IObjectCreationOperation { Type.IsReferenceType: true } create:
                    Report(PredicateAllocates, create.Syntax, $"'new {create.Type!.ToDisplayString()}'");
                    break;
                case IArrayCreationOperation or ICollectionExpressionOperation:
                    Report(PredicateAllocates, operation.Syntax, "an array or collection");
                    break;
                case IInterpolatedStringOperation:
                    Report(PredicateAllocates, operation.Syntax, "a string interpolation");
                    break;
                case IAnonymousFunctionOperation or IDelegateCreationOperation or IAnonymousObjectCreationOperation:
                    Report(PredicateAllocates, operation.Syntax, "a lambda, delegate or anonymous object");
                    break;
                case IConversionOperation { Operand.Type.IsValueType: true, Type.IsReferenceType: true } box:
                    Report(PredicateAllocates, box.Syntax, $"boxing of '{box.Operand.Type?.ToDisplayString()}'");
                    break;
                case IThrowOperation:
                    Report(PredicateThrows, operation.Syntax, "it throws");
                    break;
                case ITryOperation:
                    Report(PredicateThrows, operation.Syntax, "it has a try block");
                    break;
                case IInstanceReferenceOperation { ReferenceKind: InstanceReferenceKind.ContainingTypeInstance }:
                    Report(PredicateUsesState, operation.Syntax, "the instance ('this')");
                    break;
                case IFieldReferenceOperation { Field: { IsStatic: true } field } when !field.IsConst && !(field.IsReadOnly && field.Type.IsValueType):
                    Report(PredicateUsesState, operation.Syntax,
                        field.IsReadOnly ? $"static field '{field.Name}' of reference type" : $"mutable static field '{field.Name}'");
                    break;
                case IInvocationOperation invocation:
                    Call(invocation.TargetMethod, invocation.Instance, invocation.Syntax);
                    break;
                case IPropertyReferenceOperation { Property.GetMethod: { } getter } property:
                    Call(getter, property.Instance, property.Syntax);
                    break;
            }
        }

        private void Call(IMethodSymbol target, IOperation? instance, SyntaxNode syntax)
        {
            target = target.OriginalDefinition;
            if (_chain.Contains(target, SymbolEqualityComparer.Default))
            {
                IMethodSymbol caller = _chain.Peek();
                Report(PredicateRecursive, syntax, SymbolEqualityComparer.Default.Equals(caller, target) ? "" : $" through '{caller.Name}'");
                return;
            }
            ITypeSymbol? receiver = instance?.Type;
            bool throughReference = instance is not null && !(receiver?.IsValueType ?? false) && receiver is not ITypeParameterSymbol { HasValueTypeConstraint: true };
            if (throughReference || (instance is null && !target.IsStatic))
            {
                Report(PredicateCallsThroughReference, syntax, target.ToDisplayString(SymbolDisplayFormat.CSharpShortErrorMessageFormat));
                return;
            }
            if (target.DeclaringSyntaxReferences.Length > 0 && target.MethodKind is MethodKind.Ordinary or MethodKind.PropertyGet or MethodKind.LocalFunction)
                Method(target);
        }
    }
}
