// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// Lists the public static methods of an assembly, one per line:
// type <TAB> method <TAB> parameter types (comma-separated) <TAB> return type <TAB> returns an IDictionary
// Used by test_ps1_contracts.py to check the engine entry points the .ps1 modules call. C# 5.
using System;
using System.Collections;
using System.Reflection;

public static class EngineEntryPoints
{
    public static int Main(string[] args)
    {
        Assembly assembly = Assembly.LoadFrom(args[0]);
        foreach (Type type in assembly.GetExportedTypes())
        {
            foreach (MethodInfo method in type.GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                ParameterInfo[] parameters = method.GetParameters();
                string[] names = new string[parameters.Length];
                for (int i = 0; i < parameters.Length; i++)
                    names[i] = parameters[i].ParameterType.FullName;
                Console.WriteLine("{0}\t{1}\t{2}\t{3}\t{4}", type.FullName, method.Name, String.Join(",", names),
                    method.ReturnType.FullName, typeof(IDictionary).IsAssignableFrom(method.ReturnType));
            }
        }
        return 0;
    }
}
