// Mono host for the engine: one JSON request on stdin, the entry point's result as JSON on stdout.
// {"entry": "Run"|"Info", "args": {...}, "check_mode": false}
using System;
using System.Collections;
using System.IO;
using System.Text;
using ansible_collections.ese.backup.plugins.module_utils.EseEngine;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;

namespace EseSimHost
{
    public static class Program
    {
        public static int Main(string[] argv)
        {
            string input = Console.In.ReadToEnd();
            IDictionary req;
            try
            {
                req = Json.Parse(input) as IDictionary;
                if (req == null) throw new FormatException("request must be a JSON object");
            }
            catch (FormatException e)
            {
                Console.Error.WriteLine("bad request: " + e.Message);
                return 2;
            }
            string entry = req.Contains("entry") ? Convert.ToString(req["entry"]) : "Run";
            IDictionary args = req.Contains("args") ? req["args"] as IDictionary : null;
            bool check = req.Contains("check_mode") && req["check_mode"] is bool && (bool)req["check_mode"];
            object result;
            if (entry == "Run") result = Engine.Run(args, check);
            else if (entry == "Info") result = Engine.Info(args);
            else { Console.Error.WriteLine("unknown entry " + entry); return 2; }
            Stream stdout = Console.OpenStandardOutput();
            byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(result, false) + "\n");
            stdout.Write(data, 0, data.Length);
            stdout.Flush();
            return 0;
        }
    }
}
